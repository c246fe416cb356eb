"""Repeats found through buckets are exactly the repeats of matching.py's all-pairs definition, in bounded time."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bbuvl.eval.match_many import match_photos
from bbuvl.eval.matching import duplicate_predictions
from bbuvl.eval.repeats import repeated


def all_pairs(boxes: np.ndarray, group: np.ndarray, rank: np.ndarray, iou: float) -> np.ndarray:
    """The definition: matching.py's duplicate_predictions, group by group, ranks as scores."""
    out = np.zeros(len(boxes), dtype=bool)
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        found = duplicate_predictions(boxes[idx].tolist(), ["x"] * len(idx), (-rank[idx]).astype(float).tolist(), iou)
        out[idx[found]] = True
    return out


def crowd(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes around three centres, jittered from a tenth of a pixel to 20, with repeats, rounding and odd scales."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 250))
    c = rng.uniform(0, 100, (3, 2))[rng.integers(0, 3, n)] + rng.normal(0, [0.1, 3, 8, 20][seed % 4], (n, 2))
    wh = rng.uniform(0, 30, (n, 2)) if seed % 5 else np.abs(rng.normal(20, 0.5, (n, 2)))
    boxes = np.concatenate([c, c + wh], axis=1)
    if seed % 3 == 0:
        boxes = np.round(boxes)  # ties of coordinates, boxes of zero width
    if seed % 7 == 0:
        boxes[: n // 2] = boxes[0]  # one box written many times
    if seed % 11 == 0:
        boxes *= 1e-6  # sides of a millionth of a pixel
    if seed % 13 == 0:
        boxes += 1e7  # far from the origin
    group = rng.integers(0, 3, n)
    rank = np.zeros(n, dtype=np.int64)
    for g in range(3):
        members = np.flatnonzero(group == g)
        rank[members] = rng.permutation(len(members))
    return boxes, group, rank


@pytest.mark.parametrize("seed", range(120))
def test_repeats_equal_the_all_pairs_definition(seed):
    boxes, group, rank = crowd(seed)
    iou = [0.9, 0.5, 0.99, 0.1][seed % 4]
    assert (repeated(boxes, group, rank, iou) == all_pairs(boxes, group, rank, iou)).all()


def test_known_answer_on_four_boxes():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10.5], [0, 0, 10, 12], [50, 50, 60, 60]], dtype=float)
    # IoU(0, 1) = 100 / 105 = 0.952 > 0.9; IoU(0, 2) = 100 / 120 = 0.833; IoU(1, 2) = 105 / 120 = 0.875
    one_label = np.zeros(4, dtype=np.int64)
    assert repeated(boxes, one_label, np.array([1, 0, 2, 3]), 0.9).tolist() == [True, False, False, False]
    # another label never repeats
    assert not repeated(boxes, np.array([0, 1, 0, 0]), np.array([1, 0, 2, 3]), 0.9).any()


def test_a_threshold_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="duplicate IoU"):
        repeated(np.zeros((2, 4)), np.zeros(2, dtype=np.int64), np.arange(2), 1.0)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_100000_boxes_over_one_object_take_seconds():
    # Compared pair by pair along x, 20,000 such boxes took 57.7 s and 100,000 did not end in 300 s.
    rng = np.random.default_rng(0)
    n = 100_000
    boxes = (np.array([100, 100, 300, 260.0]) + rng.uniform(-1, 1, (n, 4))).tolist()  # any two: IoU >= 0.95
    labels = rng.choice(["螺丝连接点/BBU安装螺丝/连接正确", "线缆"], n).tolist()
    start = time.perf_counter()
    result = match_photos([[[100, 100, 300, 260]]], [["线缆"]], [boxes], [labels], [rng.random(n).tolist()])
    assert time.perf_counter() - start < 20  # 3-5 s on a shared 2-core machine
    assert result.totals.duplicates == n - 2  # the best box of each label repeats nothing, every other box repeats it
    assert result.totals.matched == 1
