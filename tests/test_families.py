"""Every family end to end in the default run: one dataset, each family's own answer convention, stored pixels back.

The shared tiny-model tests run per family only in `make test-all` (tests/conftest.py); these keep one
train -> predict -> eval per family, the plain-model baseline and the packing refusal in every run.
"""

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config, load_config
from bbuvl.data.coords import CoordinateContract
from bbuvl.data.schema import read_records, resolve_image, write_dataset
from bbuvl.synthetic.dataset import synthesize
from bbuvl.tiny.model import build_tiny_model

FAMILY_NAMES = ["qwen2_5_vl", "qwen3_vl", "qwen3_5"]
runner = CliRunner()


@pytest.fixture(scope="module")
def one_photo(tmp_path_factory) -> Path:
    """A dataset converted once: one 224x168 training photo with two objects (val = the same photo)."""
    out = tmp_path_factory.mktemp("one") / "data"
    synthesize(out, 2, 1, seed=1, size=(224, 168), num_teachers=1)
    record = read_records(out / "train.jsonl")[0]
    record = record.model_copy(update={"objects": record.objects[:2]})
    write_dataset(out / "train.jsonl", [record])
    write_dataset(out / "val.jsonl", [record])
    return out


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """A freshly built, never trained tiny model of every family."""
    root = tmp_path_factory.mktemp("families")
    return {f: build_tiny_model(root / f, family=f, seed=0) for f in FAMILY_NAMES}


def _config(model: Path, data: Path, out: Path, *extra: str):
    return load_config(None, [
        f"model.path={model}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        f"data.train={data / 'train.jsonl'}", "data.val=null", "data.teachers=null", "data.teacher_ratio=0",
        "data.num_workers=0", f"training.output_dir={out}", "training.per_device_batch_size=1",
        "training.gradient_accumulation_steps=1", "training.max_steps=60", "training.bf16=false",
        "training.gradient_checkpointing=false", "training.use_cpu=true", "training.save_steps=1000",
        "training.warmup_ratio=0", "training.lr_scheduler=constant", "detection.enabled=false", "monitor.enabled=false",
        *[f"training.lr.{g}=3e-3" for g in ("vision", "merger", "llm", "adapter")], *extra,
    ])


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_one_dataset_trains_each_family_in_its_own_convention_and_predicts_stored_pixels(family, tiny_dirs, one_photo, tmp_path):
    """60 steps on one photo memorise its answer: the raw answer is the family's, the boxes come back as stored."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(dump_config(_config(tiny_dirs[family], one_photo, tmp_path / "run")), encoding="utf-8")
    r = runner.invoke(app, ["train", str(cfg)])
    assert r.exit_code == 0, r.output
    ckpt = tmp_path / "run" / "final"
    contract = CoordinateContract.load(ckpt)
    assert contract.family == family

    pred = tmp_path / "pred.jsonl"
    r = runner.invoke(app, ["predict", "-c", str(ckpt), "-i", str(one_photo / "val.jsonl"), "-o", str(pred),
                            "--mode", "generate"])
    assert r.exit_code == 0, r.output
    line = json.loads(pred.read_text(encoding="utf-8"))
    record = read_records(one_photo / "val.jsonl")[0]
    raw = json.loads(line["raw"])
    expected_raw = [contract.to_model(o.bbox_2d, record.size) for o in sorted(record.objects, key=lambda o: o.bbox_2d[1])]
    assert [o["bbox_2d"] for o in raw] == expected_raw
    if family == "qwen2_5_vl":  # absolute pixels of the 224x168 frame (already multiples of 28)
        assert expected_raw[0] == [round(v) for v in sorted(record.objects, key=lambda o: o.bbox_2d[1])[0].bbox_2d]
    else:  # relative to the sides, 0-1000
        assert max(max(b) for b in expected_raw) > 224
    # Back in the stored photo's pixels, within half a unit of the family's grid.
    unit = max(record.size[0] / contract.answer_extent(record.size)[0], record.size[1] / contract.answer_extent(record.size)[1])
    for got, obj in zip(sorted(line["objects"], key=lambda o: o["bbox_2d"][1]), sorted(record.objects, key=lambda o: o.bbox_2d[1])):
        assert got["label"] == obj.desc
        assert max(abs(a - b) for a, b in zip(got["bbox_2d"], obj.bbox_2d)) <= unit / 2 + 0.05

    metrics = tmp_path / "metrics.json"
    r = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(one_photo / "val.jsonl"), "--out", str(metrics)])
    assert r.exit_code == 0, r.output
    assert json.loads(metrics.read_text(encoding="utf-8"))["AP50"] == pytest.approx(1.0)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_predict_and_doctor_run_on_a_fresh_model_folder_never_trained(family, tiny_dirs, one_photo, tmp_path):
    model = tiny_dirs[family]
    pred = tmp_path / "base.jsonl"
    r = runner.invoke(app, ["predict", "-c", str(model), "-i", str(one_photo / "val.jsonl"), "-o", str(pred)])
    assert r.exit_code == 2 and "--labels" in r.output
    r = runner.invoke(app, ["predict", "-c", str(model), "-i", str(one_photo / "val.jsonl"), "-o", str(pred),
                            "--labels", str(one_photo / "labels.json")])  # constrained: well-formed even untrained
    assert r.exit_code == 0, r.output
    line = json.loads(pred.read_text(encoding="utf-8"))
    assert line["error"] is None and (line["width"], line["height"]) == (224, 168)
    metrics = tmp_path / "base_metrics.json"
    r = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(one_photo / "val.jsonl"), "--out", str(metrics)])
    assert r.exit_code == 0, r.output

    cfg = tmp_path / "run.yaml"
    cfg.write_text(dump_config(_config(model, one_photo, tmp_path / "run", "detection.enabled=true",
                                       "detection.num_queries=8", "detection.num_heads=4")), encoding="utf-8")
    r = runner.invoke(app, ["doctor", "model", str(model), "--config", str(cfg)], terminal_width=200)
    assert r.exit_code == 0, r.output
    flat = re.sub(r"[│\s]+", " ", r.output)  # the table wraps long details over several rows
    for check in ("chat template ok", "image-pad tokens ok", "detection head ok", "coordinate contract ok"):
        assert check in flat
    assert f"from the config (not trained yet): family {family}" in flat


def test_packing_is_refused_for_a_family_whose_layers_carry_state_along_a_row(tiny_dirs, one_photo, tmp_path):
    from bbuvl.train.trainer import build_run

    cfg = _config(tiny_dirs["qwen3_5"], one_photo, tmp_path / "run", "data.collator=packed")
    with pytest.raises(ValueError, match="packed is refused for Qwen3.5.*Gated DeltaNet"):
        build_run(cfg)
    build_run(_config(tiny_dirs["qwen3_vl"], one_photo, tmp_path / "run3", "data.collator=packed"))  # isolated: allowed


def test_a_named_family_that_the_checkpoint_contradicts_is_refused(tiny_dirs, one_photo, tmp_path):
    from bbuvl.train.trainer import build_run

    cfg = _config(tiny_dirs["qwen3_vl"], one_photo, tmp_path / "run", "model.family=qwen2_5_vl")
    with pytest.raises(ValueError, match="model.family is qwen2_5_vl but .* holds a qwen3_vl model"):
        build_run(cfg)


def test_the_baseline_sits_beside_the_fine_tuned_numbers(one_photo, tmp_path):
    record = read_records(one_photo / "val.jsonl")[0]
    pred = tmp_path / "pred.jsonl"
    objects = [{"bbox_2d": o.bbox_2d, "label": o.desc, "score": 1.0} for o in record.objects]
    pred.write_text(json.dumps({"image": str(resolve_image(one_photo / "val.jsonl", record.image)), "width": 224,
                                "height": 168, "objects": objects, "raw": "", "error": None}) + "\n", encoding="utf-8")
    baseline = tmp_path / "base.json"
    r = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(one_photo / "val.jsonl"), "--out", str(baseline)])
    assert r.exit_code == 0, r.output
    data = json.loads(baseline.read_text(encoding="utf-8"))
    baseline.write_text(json.dumps({**data, "AP50": 0.25}), encoding="utf-8")
    r = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(one_photo / "val.jsonl"), "--out", str(tmp_path / "m.json"),
                            "--baseline", str(baseline), "--report", str(tmp_path / "report")], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "Against the baseline" in r.output and "+0.750" in r.output
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "Against the baseline" in page and "+0.750" in page
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    r = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(one_photo / "val.jsonl"), "--out", str(tmp_path / "x.json"),
                            "--baseline", str(tmp_path / "bad.json")])
    assert r.exit_code == 2 and "not a METRICS.json" in r.output
