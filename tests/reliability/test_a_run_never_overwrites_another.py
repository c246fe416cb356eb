"""Class 3: a used output_dir is refused without --resume/--overwrite; resume takes the newest complete checkpoint."""

import shutil

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config
from bbuvl.model.checkpoint import CheckpointError, load_model
from bbuvl.train.run_dir import RunDirError, latest_complete_checkpoint
from bbuvl.train.trainer import train

STEPS = ("training.max_steps=2", "training.save_steps=1", "training.logging_steps=1", "data.val=null")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir, small_dataset):
    """A 2-step run with checkpoint-1, checkpoint-2 and final/ (trained once, copied by each test)."""
    from bbuvl.config import load_config

    out = tmp_path_factory.mktemp("run") / "run"
    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        f"data.train={small_dataset / 'train.jsonl'}", f"data.teachers={small_dataset / 'teachers.jsonl'}",
        "data.num_workers=0", f"training.output_dir={out}", "training.per_device_batch_size=2",
        "training.gradient_accumulation_steps=1", "training.bf16=false", "training.gradient_checkpointing=false",
        "training.use_cpu=true", "training.warmup_ratio=0", "detection.num_queries=8", "detection.num_heads=4",
        "detection.caption_layers=1", "detection.decoder_layers=1", *STEPS,
    ])
    train(cfg, progress=False)
    return cfg


def copy_run(cfg, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(cfg.training.output_dir, out)
    new = cfg.model_copy(deep=True)
    new.training.output_dir = str(out)
    return new, out


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_training_again_into_a_used_folder_is_refused_and_leaves_it_as_it_was(finished_run, tmp_path):
    cfg, out = copy_run(finished_run, tmp_path)
    before = (out / "final" / "model.safetensors").read_bytes()
    with pytest.raises(RunDirError, match="holds another run.*--resume.*--overwrite"):
        train(cfg, progress=False)
    assert (out / "final" / "model.safetensors").read_bytes() == before
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    r = CliRunner().invoke(app, ["train", str(config)])
    assert r.exit_code == 2 and "holds another run" in r.output and "Traceback" not in r.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_overwrite_clears_the_old_runs_checkpoints_so_resume_cannot_bring_them_back(finished_run, tmp_path):
    cfg, out = copy_run(finished_run, tmp_path)
    (out / "checkpoint-50").mkdir()  # an old run's later checkpoint
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-50", dirs_exist_ok=True)
    cfg.training.max_steps = 1
    train(cfg, progress=False, overwrite=True)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert latest_complete_checkpoint(out)[0] == out / "checkpoint-1"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_resume_skips_a_cut_short_and_a_half_saved_checkpoint_and_ignores_bak_folders(finished_run, tmp_path):
    cfg, out = copy_run(finished_run, tmp_path)
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-16.bak")
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-3")
    weights = out / "checkpoint-3" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a disk that filled mid-save
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-4")
    (out / "checkpoint-4" / "trainer_state.json").unlink()  # killed before HF wrote its state
    found, skipped = latest_complete_checkpoint(out)
    assert found == out / "checkpoint-2"
    assert [(p.name, "trainer_state" in why or "header says" in why) for p, why in skipped] == [
        ("checkpoint-4", True), ("checkpoint-3", True)]
    with pytest.raises(CheckpointError, match="model.safetensors.*header says"):
        load_model(out / "checkpoint-3")
    cfg.training.max_steps = 3
    result = train(cfg, resume=True, progress=False)
    # checkpoint-2's history plus one new step: not 4's, not 16's
    assert [h["step"] for h in result["history"] if "loss" in h] == [1, 2, 3]


def test_resume_with_nothing_complete_says_why(finished_run, tmp_path):
    cfg, out = copy_run(finished_run, tmp_path)
    for ckpt in out.glob("checkpoint-*"):
        (ckpt / "trainer_state.json").write_text('{"global_step": 1, "log_hi', encoding="utf-8")
    with pytest.raises(RunDirError, match="no complete checkpoint-N.*checkpoint-2: trainer_state.json is cut short"):
        train(cfg, resume=True, progress=False)


def test_a_truncated_model_file_is_a_clean_predict_error(finished_run, tmp_path):
    _, out = copy_run(finished_run, tmp_path)
    weights = out / "final" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48), "white").save(photos / "a.jpg")  # photos are checked before the model loads
    r = CliRunner().invoke(app, ["predict", "-c", str(out / "final"), "-i", str(photos), "-o", str(tmp_path / "p.jsonl"),
                                 "--device", "cpu"])
    assert r.exit_code == 2 and "model.safetensors" in r.output and "re-copy it" in " ".join(r.output.split())
    assert "Traceback" not in r.output
    assert yaml.safe_load((out / "final" / "bbuvl.yaml").read_text(encoding="utf-8"))  # nothing else was touched
