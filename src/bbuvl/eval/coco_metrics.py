"""COCO detection metrics (faster-coco-eval, the same numbers as pycocotools) from records and predictions.

Real COCO AP, not "precision at one threshold" (docs/design.md): precision interpolated
over 101 recall points, averaged over IoU 0.50:0.05:0.95 and over categories, with areas taken in
pixels of the stored image (small < 32², medium < 96², large above). Ground truth comes from
`bbuvl.data.coco.records_to_coco`, exactly as `bbuvl data export-coco` writes it; categories are the
labels cut to the evaluated hierarchy level. Undefined values (no ground truth in a category or size
range: pycocotools' -1) are None. COCO ranks detections of equal score in photo order, so `coco_evaluate` hands it the
photos and boxes in one order (eval/order.py), and the numbers do not depend on the order they were listed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from bbuvl.data.coco import records_to_coco
from bbuvl.data.labels import label_at_level
from bbuvl.data.schema import ImageRecord
from bbuvl.eval.order import photo_order, sorted_gt, sorted_predictions

# The order of COCOeval.stats (pycocotools and faster-coco-eval agree on the first twelve).
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
CURVE_IOUS = (0.5, 0.75)
_AREA_INDEX = {"all": 0, "small": 1, "medium": 2, "large": 3}


@dataclass
class CocoResult:
    """COCO numbers for one evaluation.

    summary / agnostic: STAT_NAMES -> value (class-aware, and with every label treated as one class).
    per_category: label -> {AP, AP50, AP75, APs, APm, APl, AR100, gt, pred}.
    curves: {"recall": [101], "iou_0.50": {"mean": [101], "agnostic": [101], "per_category": {label: [101]}}, ...}
    with precision at each recall threshold (None past the highest recall reached by no category).
    """

    summary: dict[str, float | None]
    agnostic: dict[str, float | None]
    per_category: dict[str, dict[str, Any]]
    curves: dict[str, Any] = field(default_factory=dict)


def _value(x: float) -> float | None:
    return None if x < 0 else float(x)


def coco_ground_truth(records: list[ImageRecord], level: int | None = None) -> dict[str, Any]:
    """COCO ground truth for `records` with categories cut to `level` (image ids 1..N in record order)."""
    gt = records_to_coco(records)
    if not level:
        return gt
    names = sorted({label_at_level(c["name"], level) for c in gt["categories"]})
    new_id = {n: i for i, n in enumerate(names, start=1)}
    old_to_new = {c["id"]: new_id[label_at_level(c["name"], level)] for c in gt["categories"]}
    for a in gt["annotations"]:
        a["category_id"] = old_to_new[a["category_id"]]
    gt["categories"] = [{"id": i, "name": n, "supercategory": label_at_level(n, 1)} for n, i in new_id.items()]
    return gt


def coco_detections(
    gt: dict[str, Any], predictions: Sequence[Sequence[dict[str, Any]]], level: int | None = None,
) -> list[dict[str, Any]]:
    """COCO results (`image_id`, `category_id`, xywh `bbox`, `score`) for predictions aligned with gt's images.

    Labels absent from the ground truth are added to `gt["categories"]`: they have no AP of their own
    (no ground truth), but listing them shows what the model invented.
    """
    cat_id = {c["name"]: c["id"] for c in gt["categories"]}
    dets = []
    for image_id, objects in enumerate(predictions, start=1):
        for o in objects:
            name = label_at_level(o["label"], level)
            if name not in cat_id:
                cat_id[name] = len(cat_id) + 1
                gt["categories"].append({"id": cat_id[name], "name": name, "supercategory": label_at_level(name, 1)})
            x1, y1, x2, y2 = o["bbox_2d"]
            dets.append({"image_id": image_id, "category_id": cat_id[name], "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "score": float(o["score"])})
    return dets


@dataclass
class CocoRun:
    """What one COCO evaluation leaves for the numbers: its 12 stats, `eval` (precision [T, R, K, A, M], recall
    [T, K, A, M], scores) and the params they are indexed by; not the evaluator, whose indexes and copies of every
    box were held through the next evaluation."""

    stats: np.ndarray
    eval: dict[str, Any]
    params: Any


def run_cocoeval(gt: dict[str, Any], dets: list[dict[str, Any]], one_class: bool = False) -> CocoRun:
    """Evaluate, accumulate and summarise (quietly); `one_class`: every label as one class, for class-agnostic AP.

    Relabelling (rather than COCOeval's useCats=0) keeps boxes whose label the ground truth never uses: useCats=0
    still drops them, yet a box is a box whatever it is called.
    """
    one = {"category_id": 1} if one_class else {}
    annotations = [
        {**d, "id": i, "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0, **one} for i, d in enumerate(dets, start=1)
    ]
    # Fresh annotation dicts: the evaluator writes flags into them, and gt is evaluated twice (aware, agnostic).
    categories = [{"id": 1, "name": "object", "supercategory": "object"}] if one_class else gt["categories"]
    coco_gt = COCO({"images": gt["images"], "categories": categories,
                    "annotations": [{**a, **one} for a in gt["annotations"]]}, print_function=_quiet)
    coco_dt = COCO({"images": gt["images"], "categories": categories, "annotations": annotations},
                   print_function=_quiet)
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=_quiet)
    evaluate_by_category(ev)
    ev.summarize()
    return CocoRun(ev.stats, ev.eval, ev.params)


def evaluate_by_category(ev: COCOeval_faster) -> int:
    """`ev.evaluate()` and `ev.accumulate()` one category at a time, each over the photos that hold it: the same
    `ev.eval` to the bit, without a result for every photo and category pair at once. Returns how many photo and
    category pairs it evaluated.

    COCOeval evaluates every photo for every category, most of them empty, and held ~1 KB in C++ per pair: 16,000
    photos of 19 labels peaked at 670 MB for the class-aware pass alone (bench/eval_memory.py). A pair with no box
    on either side adds nothing to its category's counts, and a category's detections are ranked in photo order
    either way, so its precision, recall and scores are the whole evaluation's."""
    p = ev.params
    img_ids, cat_ids = sorted(p.imgIds), sorted(set(p.catIds))
    held: dict[int, set[int]] = {c: set() for c in cat_ids}
    for coco in (ev.cocoGt, ev.cocoDt):
        for a in coco.dataset["annotations"]:
            if a["category_id"] in held:
                held[a["category_id"]].add(a["image_id"])
    T, R, A, M = len(p.iouThrs), len(p.recThrs), len(p.areaRng), len(p.maxDets)
    precision = -np.ones((T, R, len(cat_ids), A, M))
    scores = -np.ones((T, R, len(cat_ids), A, M))
    recall = -np.ones((T, len(cat_ids), A, M))
    date, pairs = "", 0
    for k, c in enumerate(cat_ids):
        if not held[c]:
            continue  # neither side holds it: undefined (-1), as COCOeval leaves it
        p.catIds, p.imgIds = [c], [i for i in img_ids if i in held[c]]
        pairs += len(p.imgIds)
        ev.evaluate()
        ev.accumulate()
        precision[:, :, k], scores[:, :, k] = ev.eval["precision"][:, :, 0], ev.eval["scores"][:, :, 0]
        recall[:, k], date = ev.eval["recall"][:, 0], ev.eval["date"]
        ev.ious = {}  # this category's, of no use past its accumulation
    p.catIds, p.imgIds = cat_ids, img_ids
    ev.eval = {"params": p, "counts": [T, R, len(cat_ids), A, M], "date": date, "precision": precision,
               "scores": scores, "recall": recall}
    return pairs


def _quiet(*_: Any) -> None:
    return None


def coco_evaluate(
    records: list[ImageRecord], predictions: Sequence[Sequence[dict[str, Any]]], level: int | None = None,
) -> CocoResult:
    """COCO metrics for `predictions[i]` (`{"bbox_2d", "label", "score"}` dicts) on `records[i]`, the same for the
    same photos in any order (eval/order.py)."""
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} ground-truth photos but {len(predictions)} prediction lists")
    order = photo_order(records, predictions)
    records = [sorted_gt(records[i]) for i in order]
    predictions = [sorted_predictions(predictions[i]) for i in order]
    gt = coco_ground_truth(records, level)
    dets = coco_detections(gt, predictions, level)
    gt_count = {c["id"]: 0 for c in gt["categories"]}
    for a in gt["annotations"]:
        gt_count[a["category_id"]] += 1
    pred_count = {c["id"]: 0 for c in gt["categories"]}
    for d in dets:
        pred_count[d["category_id"]] += 1

    empty = {name: None for name in STAT_NAMES}
    if not gt["annotations"]:  # nothing to find: AP is undefined (pycocotools also answers -1)
        per_category = {c["name"]: {**dict.fromkeys(CATEGORY_STAT_NAMES), "gt": 0, "pred": pred_count[c["id"]]}
                        for c in gt["categories"]}
        return CocoResult(dict(empty), dict(empty), per_category, {})

    aware = run_cocoeval(gt, dets)
    agnostic = run_cocoeval(gt, dets, one_class=True)
    summary = {name: _value(v) for name, v in zip(STAT_NAMES, aware.stats)}
    agnostic_summary = {name: _value(v) for name, v in zip(STAT_NAMES, agnostic.stats)}
    names = {c["id"]: c["name"] for c in gt["categories"]}
    cat_ids = list(aware.params.catIds)
    per_category = {}
    for k, cid in enumerate(cat_ids):
        per_category[names[cid]] = {
            **_category_stats(aware.eval["precision"], aware.eval["recall"], k, aware.params.iouThrs),
            "gt": gt_count[cid], "pred": pred_count[cid],
        }
    curves = _curves(aware, agnostic, [names[c] for c in cat_ids])
    return CocoResult(summary, agnostic_summary, per_category, curves)


def _mean_valid(x: np.ndarray) -> float | None:
    valid = x[x > -1]
    return float(valid.mean()) if valid.size else None


# What `_category_stats` gives each category, undefined (None) alike when the ground truth holds no object at all
CATEGORY_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")


def _category_stats(precision: np.ndarray, recall: np.ndarray, k: int, iou_thrs: np.ndarray) -> dict[str, float | None]:
    """AP / AP50 / AP75 / APs/m/l / AR100 of category column `k`.

    precision: [T, R, K, A, M]; recall: [T, K, A, M] (T IoU thresholds, R recall points, A areas, M maxDets).
    """
    t50 = int(np.argmin(np.abs(iou_thrs - 0.5)))
    t75 = int(np.argmin(np.abs(iou_thrs - 0.75)))
    p = precision[:, :, k, :, -1]  # [T, R, A] at 100 detections per image
    return {
        "AP": _mean_valid(p[:, :, 0]),
        "AP50": _mean_valid(p[t50, :, 0]),
        "AP75": _mean_valid(p[t75, :, 0]),
        "APs": _mean_valid(p[:, :, _AREA_INDEX["small"]]),
        "APm": _mean_valid(p[:, :, _AREA_INDEX["medium"]]),
        "APl": _mean_valid(p[:, :, _AREA_INDEX["large"]]),
        "AR100": _mean_valid(recall[:, k, 0, -1]),
    }


def _curves(aware: CocoRun, agnostic: CocoRun, names: list[str]) -> dict[str, Any]:
    """Interpolated precision at each of COCO's 101 recall points, at IoU 0.5 and 0.75, all areas, 100 dets."""
    out: dict[str, Any] = {"recall": [float(r) for r in aware.params.recThrs]}
    for iou in CURVE_IOUS:
        t = int(np.argmin(np.abs(aware.params.iouThrs - iou)))
        p = aware.eval["precision"][t, :, :, 0, -1]  # [R, K]
        valid = p > -1
        counts = valid.sum(axis=1)
        mean = np.where(counts > 0, np.where(valid, p, 0).sum(axis=1) / np.maximum(counts, 1), -1)
        out[f"iou_{iou:.2f}"] = {
            "mean": [_value(v) for v in mean],
            "agnostic": [_value(v) for v in agnostic.eval["precision"][t, :, 0, 0, -1]],
            "per_category": {n: [_value(v) for v in p[:, k]] for k, n in enumerate(names) if valid[:, k].any()},
        }
    return out
