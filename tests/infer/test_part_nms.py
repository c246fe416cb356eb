"""Head mode's one box a part (`inference.part_nms`): of two overlapping queries naming one part, the surer stays."""

from __future__ import annotations

import itertools

import pytest
import torch
from PIL import Image

from bbuvl.data.faults import Faults
from bbuvl.infer.modes.head import one_box_per_part
from bbuvl.infer.predictor import Detection
from bbuvl.model.box_ops import box_iou

SCREW = "螺丝连接点/BBU安装螺丝"
CPRI = "螺丝连接点/CPRI光缆和BBU连接点"


def query(box: list[float], objectness: float, *labels: tuple[str, float]) -> list[tuple[Detection, float]]:
    """A query's labels, likeliest first, each at objectness x P(label)."""
    return [(Detection(box, label, objectness * p), objectness) for label, p in labels]


def test_the_less_sure_of_two_boxes_on_one_part_goes_with_all_its_labels_and_nothing_else_does():
    faults = Faults.load()
    seated = query([10, 10, 50, 50], 0.6, (f"{SCREW}/连接正确", 0.9), (f"{SCREW}/连接错误", 0.1))
    # the same screw seen off-centre: its pixels read as a screw out of place
    offset = query([14, 12, 54, 52], 0.4, (f"{SCREW}/连接错误", 0.95), (f"{SCREW}/连接正确", 0.05))
    plug = query([12, 10, 52, 50], 0.3, (f"{CPRI}/连接错误", 0.9), (f"{CPRI}/连接正确", 0.1))  # another part there
    far = query([200, 200, 240, 240], 0.2, (f"{SCREW}/连接错误", 1.0))  # another screw
    huawei = query([0, 100, 300, 160], 0.5, ("bbu基带处理单元/华为", 1.0))
    zte = query([0, 102, 300, 162], 0.4, ("bbu基带处理单元/中兴", 1.0))  # a label no inspection judges: itself
    huawei_again = query([2, 100, 302, 160], 0.3, ("bbu基带处理单元/华为", 1.0))
    queries = [seated, offset, plug, far, huawei, zte, huawei_again]
    assert one_box_per_part(queries, faults, 0.5) == [seated, plug, far, huawei, zte]
    # below the overlap nothing is one part; the order of the input is kept
    assert one_box_per_part(queries, faults, 0.99) == queries
    assert one_box_per_part([offset, seated], faults, 0.5) == [seated]


def test_the_surer_query_is_by_objectness_times_the_part_s_probability_not_its_best_label():
    faults = Faults.load()
    # objectness 0.5, unsure of the state but sure it is this screw: 0.5 x (0.5 + 0.5)
    unsure_state = query([10, 10, 50, 50], 0.5, (f"{SCREW}/连接错误", 0.5), (f"{SCREW}/连接正确", 0.5))
    # objectness 0.6, but most of it on another part: 0.6 x 0.6 for the screw
    unsure_part = query([12, 10, 52, 50], 0.6, (f"{SCREW}/连接正确", 0.6), (f"{CPRI}/连接正确", 0.4))
    assert one_box_per_part([unsure_part, unsure_state], faults, 0.5) == [unsure_state]


def test_head_mode_with_part_nms_keeps_a_subset_of_its_boxes_none_two_on_one_part(predictor, small_dataset):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    options = dict(objectness_threshold=0.0, nms_iou=None, score_threshold=0.0, labels_per_box=2)
    [every] = predictor.predict([photo], "head", **options)
    [parts] = predictor.predict([photo], "head", part_nms=0.3, **options)
    boxes = {tuple(d.bbox_2d) for d in parts.objects}
    assert 0 < len(boxes) and boxes <= {tuple(d.bbox_2d) for d in every.objects}
    faults = Faults.load()

    def part(box: tuple[float, ...]) -> str:
        best = max((d for d in parts.objects if tuple(d.bbox_2d) == box), key=lambda d: d.score)
        judged = faults.kind_state(best.label)
        return judged[0] if judged else best.label

    for a, b in itertools.combinations(boxes, 2):
        if float(box_iou(torch.tensor([a]), torch.tensor([b]))[0, 0]) > 0.3:
            assert part(a) != part(b)


@pytest.mark.parametrize("value", [0.0, 1.5])
def test_part_nms_out_of_range_is_refused(predictor, small_dataset, value):
    photo = Image.open(next((small_dataset / "images").rglob("*.jpg"))).convert("RGB")
    with pytest.raises(ValueError, match="part_nms"):
        predictor.predict([photo], "head", part_nms=value)
