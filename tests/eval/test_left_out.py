"""Per-category AP with each photo left out in turn, from one COCO evaluation (eval/left_out.py)."""

from __future__ import annotations

import json
import random

import pytest
from faster_coco_eval import COCOeval_faster

from bbuvl.data.faults import Faults
from bbuvl.data.schema import ImageRecord, ObjectAnn, write_dataset
from bbuvl.eval.left_out import per_category_left_out
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import read_ground_truth, read_predictions

LABELS = ["螺丝连接点/BBU安装螺丝/连接正确", "螺丝连接点/BBU安装螺丝/连接错误", "bbu基带处理单元/华为", "线缆"]


def _write(tmp_path, photos: int, seed: int = 0):
    """Ground truth and predictions of `photos` photos: boxes near the truth, missed, invented, mislabelled; scores
    that tie across photos; a label only one photo holds, one only predicted, and a photo with no line."""
    rng = random.Random(seed)
    records, lines = [], []
    for i in range(photos):
        objects = [ObjectAnn(bbox_2d=[x, y, x + rng.uniform(20, 60), y + rng.uniform(20, 60)], desc=rng.choice(LABELS))
                   for x, y in ((rng.uniform(0, 200), rng.uniform(0, 150)) for _ in range(rng.randint(0, 5)))]
        if i == 1:
            objects.append(ObjectAnn(bbox_2d=[5, 5, 40, 40], desc="机柜空间/非满载"))  # a category of one photo
        records.append(ImageRecord(images=[f"images/p{i}.jpg"], width=320, height=240, objects=objects))
        if i == 2:
            continue  # no prediction line: every object of it missed
        found = [{"bbox_2d": [v + rng.uniform(-4, 4) for v in o.bbox_2d],
                  "label": o.desc if rng.random() < 0.8 else rng.choice(LABELS), "score": rng.choice([0.3, 0.5, 0.9])}
                 for o in objects if rng.random() < 0.8]
        found += [{"bbox_2d": [100, 100, 130, 120], "label": rng.choice(LABELS + ["挡风板/未安装"]), "score": 0.5}]
        lines.append({"image": f"images/p{i}.jpg", "width": 320, "height": 240,
                      "objects": found, "raw": None, "error": None})
    write_dataset(tmp_path / "gt.jsonl", records)
    (tmp_path / "pred.jsonl").write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                                         encoding="utf-8")
    return tmp_path / "gt.jsonl", tmp_path / "pred.jsonl"


@pytest.mark.parametrize("level", [1, None])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_each_photo_left_out_scores_as_evaluating_the_others_afresh(tmp_path, level):
    gt, pred = _write(tmp_path, 7)
    records, lines, faults = read_ground_truth(gt), read_predictions(pred), Faults.load()
    left_out = per_category_left_out(records, gt, lines, pred, level, faults)
    assert len(left_out) == len(records)
    for i, found in enumerate(left_out):
        afresh = evaluate_predictions(records[:i] + records[i + 1:], gt, lines, pred, level=level, faults=faults)
        assert found == {c: {k: m[k] for k in ("AP", "AP50", "gt", "pred")}
                         for c, m in afresh.metrics["per_category"].items()}, f"photo {i} left out"
    # photo 1 alone holds the cabinet space: left out, the others hold none of it, and its AP is undefined
    assert all("机柜空间" not in c for c in left_out[1]) and any("机柜空间" in c for c in left_out[0])


def test_the_photos_are_matched_once_whatever_their_number(tmp_path, monkeypatch):
    # Scoring n sets of n - 1 photos afresh ran COCO's matching 2n times: 89 s of CPU for 200 validation photos
    evaluated = []
    original = COCOeval_faster.evaluate
    monkeypatch.setattr(COCOeval_faster, "evaluate", lambda self: evaluated.append(1) or original(self))
    counts = []
    for photos in (4, 12):
        folder = tmp_path / str(photos)
        folder.mkdir()
        gt, pred = _write(folder, photos)
        evaluated.clear()
        per_category_left_out(read_ground_truth(gt), gt, read_predictions(pred), pred, 1, Faults.load())
        counts.append(len(evaluated))
    assert counts == [1, 1]


def test_a_photo_past_100_detections_one_with_only_invented_boxes_and_ties_leave_out_as_afresh(tmp_path):
    """The left-out scores are ranked once over the photos' matches (eval/left_out.py, `_Ranked`), no longer handed to
    faster-coco-eval's accumulation again for each photo (bench/jackknife.py): COCO keeps a photo's first 100
    detections, ranks ties in photo order and counts a photo's ground truth alone; each set scores as afresh."""
    gt, pred = _write(tmp_path, 9, seed=3)
    records = read_ground_truth(gt)
    # 130 screws in photo 0, each found: COCO ranks the photo's first 100 detections alone, so 30 are missed
    screws = [[x, y, x + 12, y + 12] for x in range(0, 300, 23) for y in range(0, 230, 23)][:130]
    records[0] = records[0].model_copy(update={"objects": [*records[0].objects,
                                                           *(ObjectAnn(bbox_2d=b, desc=LABELS[0]) for b in screws)]})
    write_dataset(gt, records)
    lines = [json.loads(t) for t in pred.read_text(encoding="utf-8").splitlines()]
    lines[0]["objects"] += [{"bbox_2d": b, "label": LABELS[0], "score": round(0.95 - 0.005 * k, 3)}
                            for k, b in enumerate(screws)]
    lines[3]["objects"] = [{"bbox_2d": [200, 150, 260, 200], "label": LABELS[2], "score": 0.9}]  # invented alone
    pred.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    records, found, faults = read_ground_truth(gt), read_predictions(pred), Faults.load()
    assert sum(o["label"] == LABELS[0] for o in found[0].objects) > 100
    left_out = per_category_left_out(records, gt, found, pred, 1, faults)
    for i, scores in enumerate(left_out):
        afresh = evaluate_predictions(records[:i] + records[i + 1:], gt, found, pred, level=1, faults=faults)
        assert scores == {c: {k: m[k] for k in ("AP", "AP50", "gt", "pred")}
                          for c, m in afresh.metrics["per_category"].items()}, f"photo {i} left out"
    assert len({s["螺丝连接点"]["AP"] for s in left_out}) > 3  # the photos move the screws' AP, not one value compared
