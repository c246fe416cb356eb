"""Every box the predictor returns comes back to the stored image through the checkpoint's CoordinateContract."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PIL import Image

import bbuvl.infer.modes.generate as generate_mode
from bbuvl.data.coords import CoordinateContract
from bbuvl.infer.parse import ParseResult
from bbuvl.infer.predictor import Predictor

MODEL_FRAME_BOX = [10.0, 20.0, 30.0, 5000.0]  # the bottom edge lies outside every frame and past 1000: clipped


@pytest.fixture(scope="module")
def photos(photos):
    """Two of the validation photos (tests/infer/conftest.py)."""
    return photos[:2]


def _spy(monkeypatch, name: str) -> list:
    """Record `(result, size)` of every call of CoordinateContract.<name>."""
    calls, real = [], getattr(CoordinateContract, name)

    def spy(self, box, size):
        out = real(self, box, size)
        calls.append((out, tuple(size)))
        return out

    monkeypatch.setattr(CoordinateContract, name, spy)
    return calls


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_generate_mode_maps_model_frame_boxes_through_the_contract(predictor, photos, monkeypatch):
    # The tiny checkpoint's answers are not JSON yet: every answer parses to one known model-frame box.
    monkeypatch.setattr(generate_mode, "parse_detections",
                        lambda text, keep_repeats=False: ParseResult(objects=[{"bbox_2d": MODEL_FRAME_BOX, "label": "x", "span": (0, 1)}], ok=True))
    calls = _spy(monkeypatch, "to_stored")
    results = predictor.predict(photos, mode="generate", max_new_tokens=4)
    assert [r.objects[0].bbox_2d for r in results] == [out for out, _ in calls]
    for path, r in zip(photos, results):
        size = Image.open(path).size
        assert r.objects[0].bbox_2d == predictor.contract.to_stored(MODEL_FRAME_BOX, size)
        assert r.objects[0].bbox_2d[3] == size[1]


def test_head_mode_maps_unit_boxes_through_the_contract(predictor, photos, monkeypatch):
    calls = _spy(monkeypatch, "from_unit")
    results = predictor.predict(photos, mode="head", nms_iou=None)
    boxes = [d.bbox_2d for r in results for d in r.objects]
    assert boxes and sorted(boxes) == sorted(out for out, _ in calls)
    assert {size for _, size in calls} == {Image.open(p).size for p in photos}


def test_from_unit_scales_each_side_by_the_stored_size():
    assert CoordinateContract().from_unit([0.0, 0.25, 0.5, 1.0], (640, 480)) == [0.0, 120.0, 320.0, 480.0]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_prediction_shrinks_photos_to_the_training_token_budget(trained_checkpoint, photos, tmp_path):
    """A checkpoint trained with a vision-token budget sees every photo at the size training gave it."""
    import shutil

    budgeted = tmp_path / "budgeted"
    shutil.copytree(trained_checkpoint, budgeted)
    trained = CoordinateContract.load(trained_checkpoint)
    frame = replace(trained, max_vision_tokens=6)
    frame.save(budgeted)
    predictor = Predictor.load(budgeted, device="cpu")
    assert predictor.contract == frame
    big = Image.open(photos[0]).convert("RGB").resize((640, 480))
    assert frame.over_budget(big.size)
    prepared = predictor.prepare(big)
    assert prepared.image.size == frame.model_size(big.size)
    w, h = prepared.image.size
    assert (w // frame.factor) * (h // frame.factor) <= 6
    (result,) = predictor.predict([big], mode="head", nms_iou=None)
    for d in result.objects:
        assert 0 <= d.bbox_2d[0] <= d.bbox_2d[2] <= 640 and 0 <= d.bbox_2d[1] <= d.bbox_2d[3] <= 480


def test_a_16_bit_image_given_in_memory_is_prepared_like_its_file(predictor, tmp_path):
    import numpy as np

    wide = Image.fromarray((np.arange(224 * 168, dtype=np.uint32).reshape(168, 224) * 1.7).astype(np.uint16))
    assert wide.mode.startswith("I;16")
    wide.save(tmp_path / "wide.png")
    from_file = predictor.prepare(tmp_path / "wide.png").image
    in_memory = predictor.prepare(Image.open(tmp_path / "wide.png")).image
    assert np.array_equal(np.asarray(from_file), np.asarray(in_memory))
    assert 50 < np.asarray(in_memory).mean() < 200  # rescaled, not clipped to white as convert("RGB") does
