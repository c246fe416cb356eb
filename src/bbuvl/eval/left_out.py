"""Per-category AP with each photo left out in turn (the jackknife `bbuvl choose-tiles` reads, eval/tile_choice.py),
from one COCO evaluation of all the photos.

Scoring each of the n sets of n - 1 photos afresh (`evaluate_predictions`: pairing, COCO's IoUs and matches twice, the
constant-box prior, the faults) cost n whole evaluations per candidate scale, quadratic in the validation photos. COCO
matches boxes within one photo and category, so a photo's matches do not depend on the other photos: they are computed
once (faster-coco-eval's per-photo evaluations), and only what ranks detections across photos, the accumulation, is
done again without each photo. The numbers are those of scoring each set afresh.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import faster_coco_eval.faster_eval_api_cpp as coco_cpp
import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from bbuvl.data.faults import Faults
from bbuvl.data.schema import ImageRecord
from bbuvl.eval.coco_metrics import coco_detections, coco_ground_truth
from bbuvl.eval.order import photo_order, sorted_gt, sorted_predictions
from bbuvl.eval.predictions import PredictionLine, align_predictions
from bbuvl.eval.spelling import one_spelling

# What the scores are read at: every area, 100 detections a photo (COCO's AP and AP50, as `coco_evaluate` reports them)
_MAX_DETS = 100


def per_category_left_out(records: list[ImageRecord], gt_path: str | Path, lines: list[PredictionLine],
                          pred_path: str | Path | None, level: int | None, faults: Faults) -> list[dict[str, dict[str, Any]]]:
    """For each of `records`, in their order: `{label: {"AP", "AP50", "gt", "pred"}}` of the other photos, the AP and
    AP50 (None where undefined) of `evaluate_predictions(others, gt_path, lines, pred_path, level)`'s `per_category`,
    and its categories: those with a ground-truth or a predicted box in them. Labels are spelt as for all the photos."""
    records, lines = one_spelling(records, lines, faults)
    alignment = align_predictions(records, gt_path, lines, pred_path)
    per_image = [p.objects if p is not None else [] for p in alignment.predictions]
    order = photo_order(records, per_image)
    gt = coco_ground_truth([sorted_gt(records[i]) for i in order], level)
    dets = coco_detections(gt, [sorted_predictions(per_image[i]) for i in order], level)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    gt_in = [Counter() for _ in order]  # by position in `order` (image id - 1): boxes of each category
    pred_in = [Counter() for _ in order]
    for a in gt["annotations"]:
        gt_in[a["image_id"] - 1][a["category_id"]] += 1
    for d in dets:
        pred_in[d["image_id"] - 1][d["category_id"]] += 1
    gt_all, pred_all = sum(gt_in, Counter()), sum(pred_in, Counter())
    accumulate = _accumulator(gt, dets) if gt["annotations"] else None
    out: list[dict[str, dict[str, Any]]] = [{} for _ in order]
    for position, i in enumerate(order):
        gt_left, pred_left = gt_all - gt_in[position], pred_all - pred_in[position]
        ap = accumulate(position) if accumulate is not None else {}
        out[i] = {names[c]: {**ap.get(c, {"AP": None, "AP50": None}), "gt": gt_left[c], "pred": pred_left[c]}
                  for c in names if gt_left[c] or pred_left[c]}
    return out


def _accumulator(gt: dict[str, Any], dets: list[dict[str, Any]]) -> Any:
    """`accumulate(position)`: category id -> {"AP", "AP50"} of every photo but the one at `position` (image id
    `position + 1`), from the photos' matches computed once here, as `run_cocoeval` computes them."""
    annotations = [{**d, "id": i, "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0} for i, d in enumerate(dets, start=1)]
    coco_gt = COCO({**gt, "annotations": [dict(a) for a in gt["annotations"]]}, print_function=_quiet)
    coco_dt = COCO({"images": gt["images"], "categories": gt["categories"], "annotations": annotations},
                   print_function=_quiet)
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=_quiet, separate_eval=True)
    # The whole area range alone, at 100 detections: the other ranges and limits are matched apart and read nowhere
    ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = ev.params.areaRng[:1], ev.params.areaRngLbl[:1], [_MAX_DETS]
    ev.evaluate()
    params, evaluated = ev._paramsEval, ev._evalImgs_cpp  # one per category, then area, then photo
    photos, cat_ids = len(params.imgIds), list(params.catIds)
    t50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))

    def accumulate(position: int) -> dict[int, dict[str, float | None]]:
        others = copy.copy(params)
        others.imgIds = params.imgIds[:position] + params.imgIds[position + 1:]
        kept = [e for start in range(0, len(evaluated), photos)
                for e in (*evaluated[start:start + position], *evaluated[start + position + 1:start + photos])]
        precision = np.asarray(coco_cpp.COCOevalAccumulate(others, kept)["precision"])[:, :, :, 0, -1]  # [T, R, K]
        return {c: {"AP": _mean_valid(precision[:, :, k]), "AP50": _mean_valid(precision[t50, :, k])}
                for k, c in enumerate(cat_ids)}

    return accumulate


def _mean_valid(x: np.ndarray) -> float | None:
    valid = x[x > -1]
    return float(valid.mean()) if valid.size else None


def _quiet(*_: Any) -> None:
    return None
