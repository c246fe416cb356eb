"""The constant-box prior: COCO's AP50 for one fixed box, found fast; low on shapes, 1.0 where every box is the same."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bbuvl.data.schema import ImageRecord, ObjectAnn
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.eval.prior import best_constant_box, constant_box_ap50, constant_box_predictions
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
