"""Matching every photo at once gives, photo by photo, exactly what the one-photo matcher gives."""

from __future__ import annotations

import numpy as np
import pytest

from bbuvl.eval.match_many import PhotoMatches, match_photos
from bbuvl.eval.matching import MatchTotals, duplicate_predictions, image_f1, match_image

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
