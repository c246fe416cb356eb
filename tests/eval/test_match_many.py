"""Matching every photo at once gives, photo by photo, exactly what the one-photo matcher gives."""

from __future__ import annotations

import numpy as np
import pytest

from bbuvl.eval.match_many import PhotoMatches, match_photos
from bbuvl.eval.matching import MatchTotals, duplicate_predictions, image_f1, match_image
from bbuvl.eval.repeats import pair_iou

LABELS = ["螺丝连接点/BBU安装螺丝/连接正确", "螺丝连接点/BBU安装螺丝/连接错误", "螺丝连接点/地排处螺丝/连接正确",
          "bbu基带处理单元/华为", "线缆"]


def random_photos(seed: int, n: int, max_boxes: int, integer: bool):
    """Photos of clustered boxes (so overlaps, ties and repeats are common): gt and predictions per photo."""
    rng = np.random.default_rng(seed)
    photos = []
    for _ in range(n):
        centres = rng.uniform(0, 100, (3, 2))

        def boxes(k):
            c = centres[rng.integers(0, 3, k)] + rng.normal(0, 8, (k, 2))
            wh = rng.uniform(0, 30, (k, 2))
            b = np.concatenate([c, c + wh], axis=1)
            return (np.round(b) if integer else b).tolist()

        g, p = int(rng.integers(0, max_boxes + 1)), int(rng.integers(0, max_boxes + 1))
        gt, pred = boxes(g), boxes(p)
        if p > 1 and rng.random() < 0.3:
            pred[1] = list(pred[0])  # an exact repeat
        if g > 1 and rng.random() < 0.3:
            gt[1] = list(gt[0])  # two ground-truth boxes a prediction fits equally well
        scores = (np.round(rng.random(p), 1) if integer else rng.random(p)).tolist()  # rounding makes score ties
        photos.append((gt, rng.choice(LABELS, g).tolist(), pred, rng.choice(LABELS + ["未知/新标签"], p).tolist(), scores))
    return photos


def one_by_one(photos, iou: float = 0.5, level: int | None = None) -> PhotoMatches:
    """The reference: matching.py's functions photo by photo, summed with MatchTotals.add."""
    totals, matches, duplicates, f1 = MatchTotals(), [], [], []
    for gt, gl, pred, pl, scores in photos:
        m = match_image(gt, gl, pred, pl, scores, iou_threshold=iou, level=level)
        dup = duplicate_predictions(pred, pl, scores)
        totals.add(m, gl, pl, len(dup))
        matches.append(m)
        duplicates.append(dup)
        f1.append(image_f1(m, gl, pl, level))
    return PhotoMatches(matches, duplicates, f1, totals)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("level", [None, 1, 2])
def test_matching_all_photos_at_once_equals_matching_each(seed, level):
    photos = random_photos(seed, 40, 12, integer=seed % 2 == 0)
    iou = [0.5, 0.3, 0.75, 1.0][seed % 4]
    result = match_photos(*zip(*photos), iou_threshold=iou, level=level)
    assert result == one_by_one(photos, iou, level)


def test_one_crowded_photo_among_small_ones_matches_as_alone():
    photos = random_photos(3, 30, 4, integer=True) + random_photos(4, 1, 300, integer=True)
    assert match_photos(*zip(*photos)) == one_by_one(photos)


def test_no_photos_and_photos_without_boxes():
    assert match_photos([], [], [], [], []) == one_by_one([])
    photos = [([], [], [], [], []), ([[0, 0, 1, 1]], ["线缆"], [], [], []), ([], [], [[0, 0, 1, 1]], ["线缆"], [0.5])]
    result = match_photos(*zip(*photos))
    assert result == one_by_one(photos)
    assert [m.missed for m in result.matches] == [[], [0], []] and result.f1 == [1.0, 0.0, 0.0]


def test_repeats_near_repeats_and_empty_boxes_are_found_as_the_one_photo_matcher_finds_them():
    rng = np.random.default_rng(5)
    base = np.concatenate([rng.uniform(0, 100, (40, 2)), rng.uniform(0, 100, (40, 2)) + rng.uniform(0, 30, (40, 2))], 1)
    base[:, 2:] = np.maximum(base[:, 2:], base[:, :2])
    jitter = base[rng.integers(0, 40, 200)] + rng.normal(0, 0.6, (200, 4)) * rng.integers(0, 2, (200, 1))
    jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2])
    empty = [[5.0, 5.0, 5.0, 9.0]] * 3  # zero-width: IoU 0 with anything, never a repeat
    pred = base.tolist() + jitter.tolist() + empty
    photos = [([[0, 0, 50, 50]], ["线缆"], pred, rng.choice(LABELS[:2], len(pred)).tolist(),
               np.round(rng.random(len(pred)), 1).tolist())]
    result = match_photos(*zip(*photos))
    assert result == one_by_one(photos) and len(result.duplicates[0]) > 50


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_answer_of_100000_boxes_on_one_photo_takes_linear_time_and_memory():
    # Every pair of a photo's boxes was compared for repeats, in arrays of 10^10 cells: out of memory (23 GB).
    import time

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (100_000, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(1, 20, (100_000, 2))], axis=1).tolist()
    boxes[1] = boxes[0]
    labels = rng.choice(LABELS, 100_000).tolist()
    labels[1] = labels[0]
    start = time.perf_counter()
    result = match_photos([[[10, 10, 60, 60]]], [[LABELS[0]]], [boxes], [labels], [[0.5] * 100_000])
    assert time.perf_counter() - start < 5  # 1.5 s on a 2-core machine
    assert 1 in result.duplicates[0] and result.totals.pred == 100_000
    assert result.totals.matched + result.totals.mislocated + result.totals.extra == 100_000


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_100000_boxes_over_one_of_ten_objects_match_in_seconds():
    # Every round was a Python step while other ground-truth boxes stayed free: 23 s for this photo.
    import time

    rng = np.random.default_rng(1)
    n = 100_000
    gt = [[40.0 * i, 0, 40.0 * i + 30, 30] for i in range(10)]
    gl = rng.choice(LABELS, 10).tolist()
    pred = (np.array([0, 0, 30, 30.0]) + rng.uniform(-4, 4, (n, 4))).tolist()
    pl, scores = rng.choice(LABELS, n).tolist(), rng.random(n).tolist()
    start = time.perf_counter()
    result = match_photos([gt], [gl], [pred], [pl], [scores])
    assert time.perf_counter() - start < 15  # 2-3 s on a shared 2-core machine
    # Known answer: the best-scored box overlapping the first object at IoU >= 0.5 takes it; no box reaches another
    # object (x2 <= 34 < 40), so nothing is mislocated, nine objects are missed and every other box is extra.
    ious = pair_iou(np.array(pred), np.array(gt[0]))
    best = int(np.argmax(np.where(ious >= 0.5, scores, -1)))
    m = result.matches[0]
    assert [(p, g) for p, g, _ in m.matched] == [(best, 0)] and m.mislocated == [] and m.missed == list(range(1, 10))
    assert len(m.extra) == n - 1
