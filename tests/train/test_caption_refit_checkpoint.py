"""A finished checkpoint's captions refit into a new checkpoint: only the caption layers change, the run config and a
record say what was done, and an existing folder or a head-less checkpoint is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bbuvl.config import CaptionRefitConfig
from bbuvl.data.faults import THRESHOLDS_FILE
from bbuvl.model.checkpoint import read_run_config
from bbuvl.outputs import OutputConflict
from bbuvl.train.caption_refit import CAPTION_MODULES, jsonl_photos
from bbuvl.train.caption_refit_checkpoint import RECORD_FILE, refit_checkpoint

CFG = CaptionRefitConfig(steps=6, min_iou=0.01, batch_size=8, balance=1.0)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {**{f"vlm.{k}": v for k, v in load_file(folder / "model.safetensors").items()},
            **{f"head.{k}": v for k, v in load_file(folder / "detection_head.safetensors").items()}}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_refit_checkpoint_differs_from_its_source_in_the_caption_layers_alone(trained_checkpoint, small_dataset,
                                                                               tmp_path):
    out = tmp_path / "refit"
    result = refit_checkpoint(trained_checkpoint, small_dataset / "train.jsonl", out, CFG, seed=3)
    assert result.pairs > 0 and result.last_loss < result.first_loss
    a, b = _weights(trained_checkpoint), _weights(out)
    assert a.keys() == b.keys()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(k.split(".")[1] in CAPTION_MODULES for k in changed), sorted(changed)
    assert read_run_config(out).detection.caption_refit == CFG
    record = json.loads((out / RECORD_FILE).read_text(encoding="utf-8"))
    assert record["source"] == str(trained_checkpoint) and record["pairs"] == result.pairs
    assert record["config"]["balance"] == 1.0
    assert [f.name for f in out.parent.iterdir()] == ["refit"] and not (out / THRESHOLDS_FILE).exists()  # no temp left
    with pytest.raises(FileExistsError, match="refit"):
        refit_checkpoint(trained_checkpoint, small_dataset / "train.jsonl", out, CFG)


def test_the_photos_are_read_from_the_jsonl_with_their_paths_resolved(small_dataset):
    photos = jsonl_photos(small_dataset / "train.jsonl")
    assert len(photos) == 8
    assert all(Path(p.path).is_file() and len(p.boxes) == len(p.labels) for p in photos)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_refit_checkpoint_reads_its_configs_photos_after_the_training_photos(trained_checkpoint, small_dataset,
                                                                              tmp_path):
    cfg = CFG.model_copy(update={"photos": str(small_dataset / "val.jsonl")})
    plain = refit_checkpoint(trained_checkpoint, small_dataset / "train.jsonl", tmp_path / "plain", CFG, seed=3)
    more = refit_checkpoint(trained_checkpoint, small_dataset / "train.jsonl", tmp_path / "more", cfg, seed=3)
    val_objects = sum(len(p.boxes) for p in jsonl_photos(small_dataset / "val.jsonl"))
    assert more.pairs + more.uncovered == plain.pairs + plain.uncovered + val_objects
    assert read_run_config(tmp_path / "more").detection.caption_refit.photos == str(small_dataset / "val.jsonl")
    inside = tmp_path / "elsewhere" / "tiles.jsonl"
    inside.parent.mkdir()
    inside.write_text((small_dataset / "val.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(OutputConflict, match="caption_refit.photos"):  # the folder it would replace holds them
        refit_checkpoint(trained_checkpoint, small_dataset / "train.jsonl", inside.parent,
                         cfg.model_copy(update={"photos": str(inside)}), overwrite=True)
    assert inside.is_file()


def test_a_refit_of_zero_steps_is_refused_before_anything_loads(tmp_path):
    with pytest.raises(ValueError, match="steps"):
        refit_checkpoint(tmp_path / "nowhere", tmp_path / "train.jsonl", tmp_path / "out", CaptionRefitConfig(steps=0))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_refit_can_add_the_pixel_context_to_a_checkpoint_with_a_pixel_level(tiny_model_dir, small_dataset, tmp_path):
    from bbuvl.config import load_config
    from bbuvl.model.checkpoint import load_model
    from bbuvl.train.trainer import train

    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", "data.teachers=null", "data.teacher_ratio=0",
        "data.num_workers=0", f"training.output_dir={tmp_path / 'run'}", "training.per_device_batch_size=2",
        "training.max_steps=2", "training.bf16=false", "training.gradient_checkpointing=false", "training.use_cpu=true",
        "training.save_steps=100", "detection.num_queries=8", "detection.num_heads=4", "detection.caption_layers=1",
        "detection.decoder_layers=1", "detection.pixel_points=4", "inference.objectness_threshold=0.0",
    ])
    source = Path(train(cfg, progress=False)["final"])
    out = tmp_path / "context"
    refit_checkpoint(source, small_dataset / "train.jsonl", out, CFG, seed=3, pixel_context=3.0)
    a, b = _weights(source), _weights(out)
    assert {k.split(".")[1] for k in b.keys() - a.keys()} == {"pixel_context_roi"} and a.keys() <= b.keys()
    changed = {k.split(".")[1] for k in a if not torch.equal(a[k], b[k])} | {"pixel_context_roi"}
    assert changed <= {*CAPTION_MODULES, "pixel_roi", "pixel_context_roi"}, changed
    assert any(b[k].any() for k in b.keys() - a.keys() if k.endswith("layers.1.weight"))  # fitted off its zero start
    assert read_run_config(out).detection.pixel_context == 3.0
    assert json.loads((out / RECORD_FILE).read_text(encoding="utf-8"))["pixel_context"] == 3.0
    model, *_ = load_model(out, device="cpu")
    assert model.detection_head.pixel_context == 3.0 and model.detection_head.pixel_context_roi is not None
    with pytest.raises(ValueError, match="already reads the pixels around"):
        refit_checkpoint(out, small_dataset / "train.jsonl", tmp_path / "twice", CFG, pixel_context=2.0)


def test_adding_the_pixel_context_to_a_head_without_a_pixel_level_is_refused(trained_checkpoint, small_dataset, tmp_path):
    with pytest.raises(ValueError, match="needs the pixel level"):
        refit_checkpoint(trained_checkpoint, small_dataset / "train.jsonl", tmp_path / "out", CFG, pixel_context=3.0)
    assert not (tmp_path / "out").exists()


def test_a_refit_never_writes_over_its_own_checkpoint_or_photos(trained_checkpoint, small_dataset, tmp_path):
    from bbuvl.outputs import OutputConflict

    before = _weights(trained_checkpoint)
    for out in (trained_checkpoint, trained_checkpoint.parent, trained_checkpoint / "refit", small_dataset):
        with pytest.raises(OutputConflict, match="input"):
            refit_checkpoint(trained_checkpoint, small_dataset / "train.jsonl", out, CFG, overwrite=True)
    after = _weights(trained_checkpoint)
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert (small_dataset / "train.jsonl").is_file()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_refit_run_from_another_folder_records_where_its_checkpoint_and_photos_were(trained_checkpoint, small_dataset,
                                                                                     tmp_path, monkeypatch):
    from bbuvl.paths import real_path

    monkeypatch.chdir(small_dataset)
    cfg = CFG.model_copy(update={"photos": "val.jsonl", "steps": 1})
    refit_checkpoint(trained_checkpoint, "train.jsonl", tmp_path / "refit", cfg, seed=3)
    record = json.loads((tmp_path / "refit" / RECORD_FILE).read_text(encoding="utf-8"))
    # As typed ('train.jsonl', 'val.jsonl'), they named other files to whatever read them from another folder.
    assert record["photos"] == str(real_path(small_dataset / "train.jsonl"))
    assert record["source"] == str(real_path(trained_checkpoint))
    assert record["config"]["photos"] == str(real_path(small_dataset / "val.jsonl"))
    assert read_run_config(tmp_path / "refit").detection.caption_refit.photos == record["config"]["photos"]
