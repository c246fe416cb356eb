"""AP and recall by object size in vision tokens at the model's frame."""

from __future__ import annotations

import pytest

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.schema import ImageRecord, ObjectAnn
from bbuvl.eval.size_buckets import TOKEN_BUCKETS, size_metrics, token_area

SCREW = "螺丝连接点/BBU安装螺丝/连接正确"
BBU = "bbu基带处理单元/华为"
# A 896x672 photo in a 448x336 frame (half scale); one Qwen2.5-VL token is 28x28 frame pixels = 56x56 stored.
CONTRACT = CoordinateContract(min_pixels=3136, max_pixels=448 * 336, family="qwen2_5_vl")


def test_token_area_counts_the_frame_cells_a_box_covers():
    assert CONTRACT.model_size((896, 672)) == (448, 336)
    assert token_area([0, 0, 56, 56], (896, 672), CONTRACT) == pytest.approx(1.0)
    assert token_area([100, 100, 212, 156], (896, 672), CONTRACT) == pytest.approx(2.0)
    assert token_area([0, 0, 28, 28], (448, 336), CONTRACT) == pytest.approx(1.0)  # shown at full size


def record(objects):
    return ImageRecord(images=["a.jpg"], width=896, height=672, objects=[ObjectAnn(bbox_2d=b, desc=d) for b, d in objects])


def test_recall_and_ap_are_per_token_bucket_and_per_label():
    small = [[10.0 + 60 * i, 10.0, 40.0 + 60 * i, 40.0] for i in range(4)]  # 30x30 stored = 0.29 tokens each
    big = [[100.0, 300.0, 500.0, 600.0]]  # 400x300 stored = 38 tokens
    records = [record([(b, SCREW) for b in small] + [(big[0], BBU)])]
    predictions = [[{"bbox_2d": small[0], "label": SCREW, "score": 0.9}, {"bbox_2d": small[1], "label": SCREW, "score": 0.8},
                    {"bbox_2d": big[0], "label": BBU, "score": 0.7}]]
    result = size_metrics(records, predictions, CONTRACT)
    sub, large = result.buckets[TOKEN_BUCKETS[0][0]], result.buckets[TOKEN_BUCKETS[3][0]]
    assert sub["objects"] == 4 and sub["recall"] == pytest.approx(0.5)
    assert large["objects"] == 1 and large["recall"] == pytest.approx(1.0) and large["AP50"] == pytest.approx(1.0)
    assert result.buckets[TOKEN_BUCKETS[1][0]] == {"objects": 0, "AP50": None, "AP50_agnostic": None, "recall": None}
    assert result.per_label[SCREW][TOKEN_BUCKETS[0][0]]["recall"] == pytest.approx(0.5)
    assert set(result.per_label[BBU]) == {TOKEN_BUCKETS[3][0]}


def test_a_wrong_label_is_found_by_the_agnostic_numbers_only():
    box = [10.0, 10.0, 40.0, 40.0]
    result = size_metrics([record([(box, SCREW)])], [[{"bbox_2d": box, "label": BBU, "score": 0.9}]], CONTRACT)
    sub = result.buckets[TOKEN_BUCKETS[0][0]]
    assert sub["AP50_agnostic"] == pytest.approx(1.0) and sub["AP50"] == pytest.approx(0.0)
