"""Fixtures the inference tests share: the trained tiny checkpoint loaded once per module, and its validation photos."""

from __future__ import annotations

import pytest

from bbuvl.data.schema import read_records, resolve_image
from bbuvl.infer.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(trained_checkpoint) -> Predictor:
    """The trained tiny checkpoint, loaded on CPU (a module may override it with another checkpoint)."""
    return Predictor.load(trained_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def photos(small_dataset) -> list[str]:
    """The small dataset's validation photos, as paths."""
    return [str(resolve_image(small_dataset / "val.jsonl", r.image)) for r in read_records(small_dataset / "val.jsonl")]
