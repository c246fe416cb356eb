"""`bbuvl doctor` on what `bbuvl model export` wrote: the folder is read as `bbuvl predict` reads it (its processor's
frame, its labels.json), not as a base model before training with the built-in defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app as cli
from bbuvl.config import Config
from bbuvl.diagnostics.model_doctor import diagnose_model
from tests.model_folders import IMAGE_PROCESSOR_GONE, remove_file


@pytest.fixture(scope="module")
def exported(tiny_model_dir, small_dataset, tmp_path_factory) -> Path:
    """A tiny checkpoint trained at a frame other than the built-in defaults (12544..50176 pixels), exported."""
    from bbuvl.config import load_config
    from bbuvl.train.trainer import train

    out = tmp_path_factory.mktemp("export [doctor]")
    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        "model.vision_positions=false", f"data.train={small_dataset / 'train.jsonl'}", "data.val=null",
        "data.teachers=null", "data.teacher_ratio=0", "data.num_workers=0", f"training.output_dir={out / 'run'}",
        "training.per_device_batch_size=2", "training.max_steps=1", "training.gradient_accumulation_steps=1",
        "training.bf16=false", "training.gradient_checkpointing=false", "training.use_cpu=true",
        "training.save_steps=100", "detection.num_queries=8", "detection.num_heads=4", "detection.caption_layers=1",
        "detection.decoder_layers=1", "inference.max_new_tokens=16",
    ])
    checkpoint = Path(train(cfg, progress=False)["final"])
    r = CliRunner().invoke(cli, ["model", "export", str(checkpoint), str(out / "exported")])
    assert r.exit_code == 0, r.output
    return out / "exported"


def _check(report, name: str):  # noqa: ANN001, ANN202 - a ModelReport, a Check
    return next((c for c in report.checks if c.name == name), None)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_doctor_model_reads_an_export_in_its_processors_frame_with_its_labels_as_predict_does(exported):
    from bbuvl.cli.predictor import read_folder
    from bbuvl.infer.predictor import Predictor

    report = diagnose_model(exported)
    assert not report.failed, report.checks
    # What `bbuvl predict -c EXPORT --labels EXPORT/labels.json` reads the photos at: the frame the model learnt.
    predicted = Predictor.load(read_folder(exported, exported / "labels.json", "zh"), device="cpu").contract
    contract = _check(report, "coordinate contract").detail
    assert (predicted.min_pixels, predicted.max_pixels) == (12544, 50176)
    assert "min_pixels=12544, max_pixels=50176" in contract and "as `bbuvl predict` reads it" in contract, contract
    assert _check(report, "processor pixels") is None  # it was a warning that inference used the defaults' frame
    labels = json.loads((exported / "labels.json").read_text(encoding="utf-8"))["labels"]
    assert f"names all {len(labels)} labels" in _check(report, "prompt labels").detail
    assert "generate mode only" in _check(report, "detection head").detail


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_doctor_model_with_a_run_config_on_an_export_warns_that_the_run_trains_in_another_frame(exported):
    report = diagnose_model(exported, Config())  # configs' defaults: 3136..1003520 pixels
    warning = _check(report, "processor pixels")
    assert warning is not None and warning.status == "warn", report.checks
    assert "(12544, 50176), what `bbuvl predict` and stock loaders read this folder at" in warning.detail
    assert "trains at (3136, 1003520)" in warning.detail
    assert "inference uses the contract" not in warning.detail  # untrue of a plain folder: predict uses its processor's


def test_doctor_model_on_an_export_whose_processor_was_edited_names_the_frame_predict_reads(exported, tmp_path):
    # Before: the contract was said to come from the processor, and the edited bounds were "what `bbuvl predict` reads"
    # with advice about a config nobody gave; predict reads bbuvl_frame.json, stock loaders the processor
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(exported, edited)
    config = json.loads((edited / "preprocessor_config.json").read_text(encoding="utf-8"))
    config.update(min_pixels=3136, max_pixels=200704)
    config.pop("size", None)
    (edited / "preprocessor_config.json").write_text(json.dumps(config), encoding="utf-8")
    report = diagnose_model(edited)
    assert "bbuvl_frame.json (the frame its checkpoint trained in)" in _check(report, "coordinate contract").detail
    warning = _check(report, "processor pixels")
    assert warning is not None and warning.status == "warn", report.checks
    assert "(3136, 200704), what stock transformers and vLLM read this folder at; `bbuvl predict` reads it at " \
           "(12544, 50176)" in warning.detail and "model.min_pixels" not in warning.detail, warning.detail


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_doctor_memory_measures_an_export_with_its_own_labels_and_names_the_mode_it_has(exported, small_dataset,
                                                                                        tmp_path):
    photo = next(iter(sorted((small_dataset / "images").rglob("*.*"))))
    common = ["doctor", "memory", str(exported), "--n", "5", "--images", str(photo), "--device", "cpu"]
    r = CliRunner().invoke(cli, [*common, "--mode", "generate", "--out", str(tmp_path / "m.png")])
    assert r.exit_code == 0, r.output  # it was refused: 'reads a checkpoint written by `bbuvl train`'
    assert (tmp_path / "m.png").stat().st_size > 0
    r = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "head.png")])  # --mode head, the default
    assert r.exit_code == 2 and "use mode 'generate'" in r.output.replace("\n", " "), r.output


@pytest.mark.parametrize("damage, named", [
    ("cut model.safetensors", "model.safetensors: 100000 bytes, its header says"),
    ("remove tokenizer.json", "no tokenizer (tokenizer.json"),
    ("remove preprocessor_config.json", f"{IMAGE_PROCESSOR_GONE} missing"),
])
def test_doctor_on_an_export_copied_or_written_half_names_the_file_at_fault(exported, tmp_path, damage, named):
    import shutil

    half = tmp_path / "half [copy]"
    shutil.copytree(exported, half)
    how, name = damage.split(" ", 1)
    if how == "cut":
        with (half / name).open("r+b") as fh:
            fh.truncate(100000)
    else:
        remove_file(half, name)
    load = _check(diagnose_model(half), "load")
    # It was safetensors' 'incomplete metadata' traceback, HF's 'Can't load video processor', or a token id mismatch.
    assert load is not None and load.status == "fail" and named in load.detail and str(half) in load.detail, load
    r = CliRunner().invoke(cli, ["doctor", "memory", str(half), "--mode", "generate", "--n", "5", "--device", "cpu",
                                 "--out", str(tmp_path / "m.png")], env={"COLUMNS": "400"})
    assert r.exit_code == 2 and named in " ".join(r.output.split()), r.output


def test_doctor_coordinates_refuses_an_out_named_as_a_picture_before_the_model_loads(trained_checkpoint, tmp_path):
    # `doctor memory --out m.png` is a plot; `doctor coordinates --out` is JSON, which a .png name hid from viewers.
    out = tmp_path / "coords [1].png"
    r = CliRunner().invoke(cli, ["doctor", "coordinates", str(trained_checkpoint), "--out", str(out), "--device", "cpu"],
                           env={"COLUMNS": "400"})
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and f"{out}: names a picture" in said and "name it .json" in said, r.output
    assert not out.exists()


def test_predict_and_train_name_a_plain_folders_cut_short_weights(exported, small_dataset, tmp_path):
    # Doctor named them; predict, serve and train ended in safetensors' 'incomplete metadata' traceback.
    import shutil

    from bbuvl.model.checkpoint import read_model_folder, start_folder_problem

    half = tmp_path / "half"
    shutil.copytree(exported, half)
    with (half / "model.safetensors").open("r+b") as fh:
        fh.truncate(100000)
    assert "model.safetensors" in (start_folder_problem(half) or "")
    with pytest.raises(Exception, match=r"damaged model folder \(model\.safetensors: 100000 bytes"):
        read_model_folder(half, labels=["x"])
    r = CliRunner().invoke(cli, ["predict", "-c", str(half), "-i", str(small_dataset / "val.jsonl"), "-o",
                                 str(tmp_path / "p.jsonl"), "--mode", "generate", "--device", "cpu", "--labels",
                                 str(half / "labels.json")],
                           env={"COLUMNS": "400"})
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "model.safetensors: 100000 bytes" in said and "Traceback" not in said, r.output
