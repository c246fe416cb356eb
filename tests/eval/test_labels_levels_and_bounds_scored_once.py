"""One label scored as one label whatever its spelling, the constant-box prior at the level of the AP beside it, and an
object on a size bucket's boundary counted in one bucket."""

from __future__ import annotations

import json

import pytest

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.labels import label_at_level
from bbuvl.data.schema import ImageRecord, ObjectAnn, read_records
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import read_predictions
from bbuvl.eval.prior import best_constant_box, constant_box_predictions
from bbuvl.eval.size_buckets import TOKEN_BUCKETS, size_metrics

WRONG = "螺丝连接点/BBU安装螺丝/连接错误"
BAFFLE = "挡风板/未安装"
CABLE = "线缆"
# The shipped hierarchy's English glosses of the same labels, as `data convert --lang en` writes them
ENGLISH = {WRONG: "screw or connection point/BBU mounting screw/wrong", BAFFLE: "air baffle/not installed",
           CABLE: "cable"}


def _write(path, rows) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predictions_in_the_hierarchys_english_glosses_score_as_the_chinese_ground_truth(tmp_path):
    # Before: the fault metrics (through the hierarchy) counted every box right, COCO AP and label accuracy 0 (8 of 8
    # matched boxes "mislabelled"), and no note said why.
    gt, pred = [], []
    for i in range(4):
        objects = [([10, 10, 50, 50], WRONG if i % 2 else CABLE), ([60, 60, 160, 90], BAFFLE)]
        gt.append({"images": [f"p{i}.png"], "width": 200, "height": 150,
                   "objects": [{"bbox_2d": b, "desc": d} for b, d in objects]})
        pred.append({"image": f"p{i}.png", "width": 200, "height": 150, "raw": None, "error": None,
                     "objects": [{"bbox_2d": b, "label": ENGLISH[d], "score": 0.9} for b, d in objects]})
    _write(tmp_path / "gt.jsonl", gt)
    _write(tmp_path / "pred.jsonl", pred)
    for level in (None, 1):
        evaluation = evaluate_predictions(read_records(tmp_path / "gt.jsonl"), tmp_path / "gt.jsonl",
                                          read_predictions(tmp_path / "pred.jsonl"), tmp_path / "pred.jsonl", level=level)
        m = evaluation.metrics
        assert m["AP50"] == pytest.approx(1.0) and m["errors"]["mislabelled"] == 0
        assert m["label_accuracy"]["full"] == pytest.approx(1.0)
        assert set(m["per_category"]) == {label_at_level(d, level) for d in (WRONG, BAFFLE, CABLE)}  # the truth's names
        assert m["faults"]["objects"]["at_fail"]["recall"] == pytest.approx(1.0)


def _records() -> list[ImageRecord]:
    """Photos whose full labels split one category in two, so the prior differs between the full labels and level 1."""
    out = []
    for i in range(12):
        box = [10.0 + 7 * i, 20.0, 60.0 + 7 * i, 70.0]
        label = "螺丝连接点/BBU安装螺丝/" + ("连接正确" if i % 3 else "连接错误")
        out.append(ImageRecord(images=[f"p{i}.png"], width=200, height=150,
                               objects=[ObjectAnn(bbox_2d=box, desc=label),
                                        ObjectAnn(bbox_2d=[120.0, 90.0 - i, 190.0, 140.0], desc=BAFFLE)]))
    return out


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_constant_box_prior_is_scored_at_the_level_of_the_ap_it_stands_beside(tmp_path):
    # Before: `--level 1` printed the full labels' prior beside the level-1 AP.
    records = _records()
    rows = [{"images": r.images, "width": r.width, "height": r.height,
             "objects": [{"bbox_2d": o.bbox_2d, "desc": o.desc} for o in r.objects]} for r in records]
    _write(tmp_path / "gt.jsonl", rows)
    _write(tmp_path / "pred.jsonl", [{"image": r.images[0], "width": 200, "height": 150, "raw": None, "error": None,
                                      "objects": []} for r in records])
    full, level_one = (evaluate_predictions(read_records(tmp_path / "gt.jsonl"), tmp_path / "gt.jsonl",
                                            read_predictions(tmp_path / "pred.jsonl"), tmp_path / "pred.jsonl",
                                            level=level).metrics["prior"] for level in (None, 1))
    box = tuple(level_one["box"])
    categories = sorted({label_at_level(o.desc, 1) for r in records for o in r.objects})
    by_coco = coco_evaluate(records, constant_box_predictions(records, box, categories), level=1)  # type: ignore[arg-type]
    assert level_one["AP50"] == pytest.approx(by_coco.summary["AP50"])
    assert full["AP50"] == pytest.approx(best_constant_box(records).ap50)
    assert level_one["AP50"] != pytest.approx(full["AP50"])


def test_an_object_of_exactly_four_tokens_is_in_the_four_to_sixteen_bucket_only():
    # Before: COCO's area ranges hold both ends, so an object of exactly 4 tokens (56x56 at factor 28) was scored in
    # "1-4 tokens" too: one object there, and recall 0.5.
    contract = CoordinateContract(min_pixels=3136, max_pixels=448 * 336, family="qwen2_5_vl")
    found, missed = [10.0, 10.0, 66.0, 66.0], [200.0, 200.0, 240.0, 240.0]  # 4.0 and 2.04 tokens
    record = ImageRecord(images=["a.png"], width=448, height=336,
                         objects=[ObjectAnn(bbox_2d=found, desc=CABLE), ObjectAnn(bbox_2d=missed, desc=CABLE)])
    result = size_metrics([record], [[{"bbox_2d": found, "label": CABLE, "score": 0.9}]], contract)
    one_to_four, four_to_sixteen = result.buckets[TOKEN_BUCKETS[1][0]], result.buckets[TOKEN_BUCKETS[2][0]]
    assert one_to_four == {"objects": 1, "AP50": 0.0, "AP50_agnostic": 0.0, "recall": 0.0}
    assert four_to_sixteen == {"objects": 1, "AP50": 1.0, "AP50_agnostic": 1.0, "recall": 1.0}
    assert result.per_label[CABLE][TOKEN_BUCKETS[1][0]]["recall"] == 0.0
