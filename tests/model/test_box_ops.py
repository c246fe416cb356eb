"""Box conversions, IoU, GIoU and NMS against straightforward Python implementations."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bbuvl.model.box_ops import (
    box_area,
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    nms,
    to_xyxy,
)

coord = st.floats(0, 1, allow_nan=False, width=64)


@st.composite
def xyxy_box(draw, min_side: float = 1e-3):
    x1, y1 = draw(st.floats(0, 0.9)), draw(st.floats(0, 0.9))
    return [x1, y1, x1 + draw(st.floats(min_side, 1)), y1 + draw(st.floats(min_side, 1))]


boxes_list = st.lists(xyxy_box(), min_size=1, max_size=6)
any_boxes_list = st.lists(st.lists(coord, min_size=4, max_size=4), min_size=1, max_size=6)  # may be inverted


def t(boxes):
    return torch.tensor(boxes, dtype=torch.float64)


def py_area(b):
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def py_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = py_area(a) + py_area(b) - inter
    return inter / union if union > 0 else 0.0


def py_giou(a, b):
    inter_union = py_area(a) + py_area(b)
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = inter_union - iw * ih
    hull = max(0.0, max(a[2], b[2]) - min(a[0], b[0])) * max(0.0, max(a[3], b[3]) - min(a[1], b[1]))
    return py_iou(a, b) - ((hull - union) / hull if hull > 0 else 0.0)


def py_nms(boxes, scores, thr, classes=None):
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        same = [k for k in keep if classes is None or classes[k] == classes[i]]
        if all(py_iou(boxes[i], boxes[k]) <= thr for k in same):
            keep.append(i)
    return keep


@given(boxes_list)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_xyxy_cxcywh_conversions_invert_each_other(boxes):
    b = t(boxes)
    assert torch.allclose(box_cxcywh_to_xyxy(box_xyxy_to_cxcywh(b)), b, atol=1e-12)
    c = box_xyxy_to_cxcywh(b)
    assert torch.allclose(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(c)), c, atol=1e-12)
    assert torch.equal(to_xyxy(b, "xyxy"), b)


def test_cxcywh_to_xyxy_on_a_known_box():
    assert box_cxcywh_to_xyxy(t([0.5, 0.4, 0.2, 0.6])).tolist() == pytest.approx([0.4, 0.1, 0.6, 0.7])


@given(boxes_list)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_box_area_matches_python(boxes):
    assert torch.allclose(box_area(t(boxes)), t([py_area(b) for b in boxes]))


@given(boxes_list, boxes_list)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_iou_is_in_unit_interval_and_matches_python(a, b):
    iou = box_iou(t(a), t(b))
    assert iou.shape == (len(a), len(b))
    assert ((iou >= 0) & (iou <= 1)).all()
    assert torch.allclose(iou, t([[py_iou(x, y) for y in b] for x in a]), atol=1e-9)
    assert torch.allclose(iou, box_iou(t(b), t(a)).T)


@given(any_boxes_list, any_boxes_list)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_giou_is_in_minus_one_one_even_for_inverted_boxes(a, b):
    giou = generalized_box_iou(t(a), t(b))
    assert ((giou >= -1 - 1e-9) & (giou <= 1 + 1e-9)).all()
    assert torch.isfinite(giou).all()


@given(boxes_list, boxes_list)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_giou_matches_python(a, b):
    expected = t([[py_giou(x, y) for y in b] for x in a])
    assert torch.allclose(generalized_box_iou(t(a), t(b)), expected, atol=1e-9)


@given(boxes_list)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_giou_of_a_box_with_itself_is_one(boxes):
    assert torch.allclose(generalized_box_iou(t(boxes), t(boxes)).diag(), torch.ones(len(boxes), dtype=torch.float64))


def test_giou_of_far_apart_boxes_approaches_minus_one():
    g = generalized_box_iou(t([[0, 0, 0.01, 0.01]]), t([[0.99, 0.99, 1, 1]]))
    assert -1 < g.item() < -0.99


@settings(max_examples=60)
@given(boxes_list, st.floats(0.05, 0.95), st.data())
def test_nms_matches_greedy_python_reference(boxes, thr, data):
    scores = data.draw(st.lists(st.floats(0, 1), min_size=len(boxes), max_size=len(boxes), unique=True))
    keep = nms(t(boxes), t(scores), thr)
    assert keep.tolist() == py_nms(boxes, scores, thr)


@settings(max_examples=60)
@given(boxes_list, st.data())
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_nms_per_class_only_suppresses_within_a_class(boxes, data):
    n = len(boxes)
    scores = data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n, unique=True))
    classes = data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    keep = nms(t(boxes), t(scores), 0.5, classes=torch.tensor(classes))
    assert keep.tolist() == py_nms(boxes, scores, 0.5, classes)


def test_nms_keeps_overlapping_boxes_of_different_classes():
    boxes = t([[0, 0, 1, 1], [0, 0, 1, 1], [0.02, 0, 1, 1]])
    scores = t([0.9, 0.8, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [0]
    assert nms(boxes, scores, 0.5, classes=torch.tensor([0, 1, 0])).tolist() == [0, 1]


def test_nms_of_no_boxes_is_empty():
    keep = nms(torch.empty(0, 4), torch.empty(0), 0.5)
    assert keep.dtype == torch.long and keep.numel() == 0
