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
from bbuvl.train.caption_refit import CAPTION_MODULES
from bbuvl.train.caption_refit_checkpoint import RECORD_FILE, dataset_photos, refit_checkpoint

CFG = CaptionRefitConfig(steps=6, min_iou=0.01, batch_size=8, balance=1.0)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {**{f"vlm.{k}": v for k, v in load_file(folder / "model.safetensors").items()},
            **{f"head.{k}": v for k, v in load_file(folder / "detection_head.safetensors").items()}}


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
    photos = dataset_photos(small_dataset / "train.jsonl")
    assert len(photos) == 8
    assert all(Path(p.path).is_file() and len(p.boxes) == len(p.labels) for p in photos)


def test_a_refit_of_zero_steps_is_refused_before_anything_loads(tmp_path):
    with pytest.raises(ValueError, match="steps"):
        refit_checkpoint(tmp_path / "nowhere", tmp_path / "train.jsonl", tmp_path / "out", CaptionRefitConfig(steps=0))
