"""A checkpoint's weights copied over in place while `bbuvl predict` runs (a retrain saving into the same folder, a
`cp`): the predictor computes on weights of its own, so every photo of the run is answered by one model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bbuvl.infer.predictor import Predictor


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_weights_rewritten_in_place_mid_run_change_no_answer(trained_checkpoint, photos, tmp_path):
    folder = shutil.copytree(trained_checkpoint, tmp_path / "final")
    predictor = Predictor.load(folder, device="cpu")
    mapped = [line for line in Path("/proc/self/maps").read_text().splitlines() if str(folder) in line]
    # Before: the model computed on the checkpoint's own mapped pages (safetensors maps them on the CPU)
    assert not mapped, mapped
    before = predictor.predict_detection(photos[:1], mode="head")
    for weights in folder.glob("*.safetensors"):  # other weights over the same files, as `cp` writes them
        size = weights.stat().st_size
        with weights.open("r+b") as f:
            f.write(os.urandom(size))
    assert predictor.predict_detection(photos[:1], mode="head") == before
