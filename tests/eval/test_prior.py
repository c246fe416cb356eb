"""The constant-box prior: COCO's AP50 for one fixed box, found fast; low on shapes, 1.0 where every box is the same."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bbuvl.data.schema import ImageRecord, ObjectAnn
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.eval.metrics import _prior
from bbuvl.eval.prior import (
    _coco_ap50,
    _prior_by_coco,
    _TruthIndex,
    best_constant_box,
    constant_box_ap50,
    constant_box_predictions,
)
from bbuvl.synthetic.dataset import image_seed
from bbuvl.synthetic.shapes import render_shapes


def shapes_records(n: int, min_objects: int, max_objects: int, size: tuple[int, int] = (448, 336)) -> list[ImageRecord]:
    out = []
    for i in range(n):
        _, objects = render_shapes(image_seed(0, "val", i), size, min_objects, max_objects)
        out.append(ImageRecord(images=[f"images/val_{i:05d}.jpg"], width=size[0], height=size[1], objects=objects))
    return out


def record(size: tuple[int, int], boxes: list[tuple[list[float], str]]) -> ImageRecord:
    return ImageRecord(images=["x.jpg"], width=size[0], height=size[1],
                       objects=[ObjectAnn(bbox_2d=b, desc=label) for b, label in boxes])


def test_the_fast_search_scores_equal_the_projects_coco_evaluation():
    records = shapes_records(40, 1, 3)
    rng = np.random.default_rng(0)
    boxes = [np.r_[np.sort(rng.random(2)), np.sort(rng.random(2))][[0, 2, 1, 3]] for _ in range(6)]
    boxes += [np.array(o.bbox_2d) / [448, 336, 448, 336] for r in records[:6] for o in r.objects[:1]]
    fast = constant_box_ap50(records, np.array(boxes))
    for box, ap in zip(boxes, fast):
        coco = coco_evaluate(records, constant_box_predictions(records, tuple(box), ["标签贴纸"])).agnostic["AP50"]
        assert ap == pytest.approx(coco, abs=1e-12)
    assert fast.max() > 0  # some boxes hit a photo or two


@pytest.mark.parametrize("min_objects, max_objects", [(1, 1), (1, 3)])
def test_no_constant_box_scores_on_shapes(min_objects, max_objects):
    records = shapes_records(100, min_objects, max_objects)
    start = time.perf_counter()
    prior = best_constant_box(records)
    assert time.perf_counter() - start < 2.0
    assert 0 < prior.ap50_agnostic < 0.2
    assert set(prior.ap50_per_label) == {o.desc for r in records for o in r.objects}
    assert all(v is not None and v < 0.2 for v in prior.ap50_per_label.values())
    x1, y1, x2, y2 = prior.box
    assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1


def test_a_box_that_every_photo_shares_scores_one_whatever_the_photo_size():
    sizes = [(640, 480), (448, 336), (320, 240), (1000, 750)] * 5
    records = [record(s, [([0.2 * s[0], 0.3 * s[1], 0.7 * s[0], 0.9 * s[1]], "线缆")]) for s in sizes]
    prior = best_constant_box(records)
    assert prior.ap50_agnostic == pytest.approx(1.0)
    assert prior.ap50 == pytest.approx(1.0) and prior.ap50_per_label == {"线缆": pytest.approx(1.0)}
    assert prior.box == pytest.approx((0.2, 0.3, 0.7, 0.9), abs=0.1)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_evaluation_in_a_process_that_scored_other_photos_before_gets_its_own_photos_prior():
    # eval/metrics.py keeps the priors it searched, for a process scoring many files against the same photos
    # (choose-tiles): one searched for other boxes, other labels or at another level is never handed back
    def shared(box: list[float], label: str = "线缆") -> list[ImageRecord]:
        return [record((400, 300), [(box, label)]) for _ in range(6)]

    top_left, bottom_right = shared([0, 0, 100, 100]), shared([300, 200, 400, 300])
    first = _prior(top_left, None)
    assert first["box"] == pytest.approx([0.0, 0.0, 0.25, 1 / 3], abs=0.02)
    first["box"].clear()  # what a caller does with its answer is not kept
    again = _prior(top_left, None)
    assert again["box"] == pytest.approx([0.0, 0.0, 0.25, 1 / 3], abs=0.02) and again["AP50"] == pytest.approx(1.0)
    assert _prior(bottom_right, None)["box"] == pytest.approx([0.75, 2 / 3, 1.0, 1.0], abs=0.02)
    two_labels = top_left[:3] + shared([0, 0, 100, 100], "线缆/接头")[:3]
    assert _prior(two_labels, None)["AP50"] == best_constant_box(two_labels).ap50 < 1.0
    assert _prior(two_labels, 1)["AP50"] == pytest.approx(1.0)  # both labels are one at level 1


def test_per_label_scores_come_from_the_box_emitted_once_for_every_label():
    # label A always at the top-left, B at the bottom-right: the box finds every A and no B
    records = [record((400, 300), [([0, 0, 100, 100], "线缆"), ([300, 200, 400, 300], "标签贴纸")]) for _ in range(10)]
    prior = best_constant_box(records)
    assert sorted(prior.ap50_per_label.values()) == [0.0, pytest.approx(1.0)]
    assert prior.ap50 == pytest.approx(0.5)
    assert prior.ap50_agnostic == pytest.approx(51 / 101)  # one box per photo finds half the objects, all in a row


def test_photos_without_ground_truth_have_no_prior():
    with pytest.raises(ValueError, match="no ground-truth"):
        best_constant_box([record((100, 100), [])])


def random_records(seed: int, n: int = 60) -> list[ImageRecord]:
    """Photos of a few sizes with integer boxes (so IoUs of exactly 0.5 occur), some photos empty, three labels."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = [(100, 100), (200, 100), (640, 480)][int(rng.integers(3))]
        boxes = []
        for _ in range(int(rng.integers(0, 5))):
            x1, y1 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            x2, y2 = x1 + int(rng.integers(0, w // 2)), y1 + int(rng.integers(0, h // 2))
            boxes.append(([x1, y1, x2, y2], str(rng.choice(["线缆", "标签贴纸", "挡风板/已安装"]))))
        out.append(record((w, h), boxes))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_the_search_tests_every_ground_truth_box_that_can_reach_iou_half(seed):
    records = random_records(seed)
    index = _TruthIndex(records)
    rng = np.random.default_rng(100 + seed)
    boxes = [np.r_[np.sort(rng.random(2)), np.sort(rng.random(2))][[0, 2, 1, 3]] for _ in range(200)]
    boxes += [np.round(b, 1) for b in index.relative[:50]] + [np.array([0.1, 0.1, 0.1, 0.3])]  # ties, a flat box
    scale = np.tile(index.sizes[index.owner], 2)
    for box in boxes:
        cand = box * scale
        iw = np.clip(np.minimum(cand[:, 2], index.gt[:, 2]) - np.maximum(cand[:, 0], index.gt[:, 0]), 0, None)
        ih = np.clip(np.minimum(cand[:, 3], index.gt[:, 3]) - np.maximum(cand[:, 1], index.gt[:, 1]), 0, None)
        area = (index.gt[:, 2] - index.gt[:, 0]) * (index.gt[:, 3] - index.gt[:, 1])
        inter = iw * ih
        every = index.owner[inter >= 0.5 * ((cand[:, 2] - cand[:, 0]) * (cand[:, 3] - cand[:, 1]) + area - inter)]
        assert sorted(index.hit_photos(box)) == sorted(every)


@pytest.mark.parametrize("seed", range(6))
def test_the_prior_reports_exactly_what_full_coco_evaluations_report(seed):
    records = random_records(seed)
    prior = best_constant_box(records)
    labels = sorted({o.desc for r in records for o in r.objects})
    coco = _prior_by_coco(records, prior.box, labels, prior.candidates)
    assert prior == coco  # equal to the last bit, not approximately


def test_a_box_at_exactly_iou_half_counts_as_found_as_coco_counts_it():
    records = [record((100, 100), [([0, 0, 10, 10], "线缆")]), record((100, 100), [([0, 0, 10, 20], "线缆")])]
    index = _TruthIndex(records)
    for box in [(0.0, 0.0, 0.1, 0.05), (0.0, 0.0, 0.1, 0.1), (0.0, 0.0, 0.1, 0.0499)]:
        agnostic, per_label = _coco_ap50(index, np.array([0, 0]), 1, box)
        coco = coco_evaluate(records, constant_box_predictions(records, box, ["线缆"]))
        assert agnostic == coco.agnostic["AP50"] and float(per_label[0].mean()) == coco.per_category["线缆"]["AP50"]


@pytest.mark.parametrize("side", [0.5, 0.1])
def test_a_part_under_a_thousandth_of_the_photos_side_leaves_a_prior_of_zero_not_an_error(side):
    # it rounded to a box without area, the search's best when nothing scores, and its refinement found no move:
    # "attempt to get argmax of an empty sequence" ended bbuvl eval
    records = [record((640, 640), [([10.0, 10.0, 10.0 + side, 10.0 + side], "螺丝")])]
    prior = best_constant_box(records)
    assert prior.ap50_agnostic == 0.0 and prior.ap50 == 0.0
    assert prior.box[2] - prior.box[0] > 1e-3 and prior.box[3] - prior.box[1] > 1e-3


def test_the_search_scores_each_candidate_the_same_whatever_its_chunk():
    """`_search_ap50` holds candidates x photos per array, so its chunk shrinks with the photos (256 rows of 16,000
    photos held ~180 MB, bench/eval_memory.py): a candidate's AP50 is its own row's, one row at a time or 256."""
    from bbuvl.eval.prior import _CHUNK_CELLS, _search_ap50

    index = _TruthIndex(random_records(3, n=80))
    boxes = np.random.default_rng(3).uniform(0, 0.5, (300, 2))
    boxes = np.concatenate([boxes, boxes + np.random.default_rng(4).uniform(0.05, 0.5, (300, 2))], axis=1)
    whole = _search_ap50(index, boxes)
    assert (whole > 0).sum() > 10  # candidates that find something, not a row of zeros compared
    assert np.array_equal(_search_ap50(index, boxes, chunk=1), whole)
    assert np.array_equal(_search_ap50(index, boxes, chunk=7), whole)
    assert _CHUNK_CELLS // 16_000 < 256
