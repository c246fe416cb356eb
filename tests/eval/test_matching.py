"""Per-image matching on hand-made photos: every box lands in exactly one bucket, and the IoU threshold is obeyed."""

from __future__ import annotations

import numpy as np
import pytest

from bbuvl.data.boxes import box_iou
from bbuvl.eval.matching import (
    MatchTotals,
    duplicate_predictions,
    image_f1,
    label_accuracy,
    label_levels,
    match_image,
)

SCREW_OK = "螺丝连接点/BBU安装螺丝/连接正确"
SCREW_BAD = "螺丝连接点/BBU安装螺丝/连接错误"
GROUND_OK = "螺丝连接点/地排处螺丝/连接正确"
BBU = "bbu基带处理单元/华为"


def test_box_iou_of_known_boxes():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert np.allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0], [0.0, 0.0, 0.0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_highest_score_takes_the_ground_truth_and_the_other_is_extra():
    gt = [[0, 0, 100, 100]]
    preds = [[0, 0, 90, 100], [0, 0, 100, 100]]  # the lower-scored box fits better, but greedy goes by score
    m = match_image(gt, [BBU], preds, [BBU, BBU], [0.9, 0.5])
    assert [(p, g) for p, g, _ in m.matched] == [(0, 0)]
    assert m.extra == [1] and m.missed == [] and m.mislocated == []


def test_each_prediction_takes_its_best_free_ground_truth():
    gt = [[0, 0, 100, 100], [50, 0, 150, 100]]
    preds = [[45, 0, 145, 100], [0, 0, 95, 100]]
    m = match_image(gt, [BBU, BBU], preds, [BBU, BBU], [0.9, 0.8])
    assert sorted((p, g) for p, g, _ in m.matched) == [(0, 1), (1, 0)]


def test_matching_ignores_labels_and_wrong_labels_count_as_mislabelled():
    gt = [[0, 0, 50, 50], [100, 100, 150, 150]]
    preds = [[0, 0, 50, 50], [100, 100, 150, 150]]
    labels = [SCREW_BAD, GROUND_OK]
    m = match_image(gt, [SCREW_OK, SCREW_OK], preds, labels, [0.9, 0.8])
    assert len(m.matched) == 2
    totals = MatchTotals()
    totals.add(m, [SCREW_OK, SCREW_OK], labels, duplicates=0)
    assert totals.mislabelled == 2
    acc = label_accuracy(totals.pairs, 3)
    assert acc == {"level_1": 1.0, "level_2": 0.5, "level_3": 0.0, "full": 0.0, "matched_boxes": 2}


def test_same_label_with_low_overlap_is_mislocated_not_missed_and_extra():
    gt = [[0, 0, 100, 100]]
    preds = [[60, 0, 160, 100]]  # IoU = 40 / 160 = 0.25
    m = match_image(gt, [BBU], preds, [BBU], [0.9])
    assert m.matched == [] and [(p, g) for p, g, _ in m.mislocated] == [(0, 0)]
    assert m.missed == [] and m.extra == []
    other = match_image(gt, [BBU], preds, ["标签贴纸"], [0.9])
    assert other.mislocated == [] and other.missed == [0] and other.extra == [0]


def test_overlap_below_a_tenth_is_missed_and_extra():
    m = match_image([[0, 0, 100, 100]], [BBU], [[95, 0, 195, 100]], [BBU], [0.9])  # IoU = 5 / 195
    assert m.missed == [0] and m.extra == [0] and m.mislocated == []


def test_mislocated_compares_labels_at_the_evaluated_level():
    gt, preds = [[0, 0, 100, 100]], [[60, 0, 160, 100]]
    assert match_image(gt, [SCREW_OK], preds, [SCREW_BAD], [0.9]).mislocated == []
    assert len(match_image(gt, [SCREW_OK], preds, [SCREW_BAD], [0.9], level=2).mislocated) == 1


def test_iou_threshold_changes_the_matching():
    gt, preds = [[0, 0, 100, 100]], [[20, 0, 120, 100]]  # IoU = 80 / 120 = 0.667
    assert len(match_image(gt, [BBU], preds, [BBU], [0.9], iou_threshold=0.5).matched) == 1
    strict = match_image(gt, [BBU], preds, [BBU], [0.9], iou_threshold=0.75)
    assert strict.matched == [] and len(strict.mislocated) == 1


@pytest.mark.parametrize("seed", range(5))
def test_every_box_lands_in_exactly_one_bucket(seed):
    rng = np.random.default_rng(seed)
    labels = [SCREW_OK, SCREW_BAD, BBU]

    def boxes(n):
        xy = rng.uniform(0, 200, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(5, 80, (n, 2))], axis=1).tolist()

    gt, preds = boxes(12), boxes(15)
    gl, pl = list(rng.choice(labels, 12)), list(rng.choice(labels, 15))
    m = match_image(gt, gl, preds, pl, rng.random(15).tolist())
    gts = [g for _, g, _ in m.matched] + [g for _, g, _ in m.mislocated] + m.missed
    ps = [p for p, _, _ in m.matched] + [p for p, _, _ in m.mislocated] + m.extra
    assert sorted(gts) == list(range(12)) and sorted(ps) == list(range(15))
    assert all(iou >= 0.5 for _, _, iou in m.matched) and all(0.1 <= iou < 0.5 for _, _, iou in m.mislocated)


def test_empty_photo_and_empty_answer():
    m = match_image([], [], [[0, 0, 10, 10]], [BBU], [0.5])
    assert m.extra == [0] and m.missed == []
    m = match_image([[0, 0, 10, 10]], [BBU], [], [], [])
    assert m.missed == [0] and m.extra == []
    assert image_f1(match_image([], [], [], [], []), [], []) == 1.0


def test_duplicates_are_same_label_near_copies_of_a_higher_scored_box():
    boxes = [[0, 0, 100, 100], [1, 0, 100, 100], [0, 0, 100, 100], [0, 0, 60, 100]]
    labels = [BBU, BBU, "标签贴纸", BBU]
    assert duplicate_predictions(boxes, labels, [0.5, 0.9, 0.8, 0.7]) == [0]  # 0 repeats the higher-scored 1
    assert duplicate_predictions([], [], []) == []


def test_f1_counts_only_right_labels_as_true_positives():
    gt, preds = [[0, 0, 10, 10], [20, 20, 30, 30]], [[0, 0, 10, 10], [20, 20, 30, 30]]
    m = match_image(gt, [SCREW_OK, BBU], preds, [SCREW_BAD, BBU], [0.9, 0.8])
    assert image_f1(m, [SCREW_OK, BBU], [SCREW_BAD, BBU]) == pytest.approx(0.5)
    assert image_f1(m, [SCREW_OK, BBU], [SCREW_BAD, BBU], level=1) == pytest.approx(1.0)


def test_totals_add_up_over_photos_and_duplicate_rate():
    totals = MatchTotals()
    m1 = match_image([[0, 0, 10, 10]], [BBU], [[0, 0, 10, 10], [0, 0, 10, 10]], [BBU, BBU], [0.9, 0.8])
    totals.add(m1, [BBU], [BBU, BBU], duplicates=1)
    m2 = match_image([[0, 0, 10, 10]], [BBU], [], [], [])
    totals.add(m2, [BBU], [], duplicates=0)
    assert totals.errors() == {"missed": 1, "extra": 1, "mislocated": 0, "mislabelled": 0, "matched": 1,
                               "gt_objects": 2, "predicted_objects": 2}
    assert totals.duplicate_rate() == 0.5
    assert MatchTotals().duplicate_rate() is None
    assert label_accuracy([], 2) == {"level_1": None, "level_2": None, "full": None, "matched_boxes": 0}


def test_label_levels_is_the_deepest_label():
    assert label_levels([BBU, SCREW_OK, "标签贴纸"]) == 3 and label_levels([]) == 1


def test_duplicate_rate_is_the_share_of_the_predictions_that_repeat_one_not_of_the_true_boxes():
    from bbuvl.eval.match_many import match_photos

    # 1 true box, 4 predictions: the best on it, two near copies of it (IoU 0.95) and one elsewhere
    result = match_photos([[[0, 0, 10, 10]]], [[BBU]], [[[0, 0, 10, 10], [0, 0, 10, 10.5], [0.5, 0, 10, 10], [50, 50, 60, 60]]],
                          [[BBU] * 4], [[0.9, 0.8, 0.7, 0.6]])
    assert (result.totals.duplicates, result.totals.pred, result.totals.gt) == (2, 4, 1)
    assert result.totals.duplicate_rate() == 0.5
    # Nothing to find and one box written twice: half the predictions repeat one, truth or none
    nothing = match_photos([[]], [[]], [[[0, 0, 10, 10], [0, 0, 10, 10]]], [[BBU, BBU]], [[0.9, 0.8]])
    assert nothing.totals.duplicate_rate() == 0.5
