"""Per-category AP with each photo left out in turn (the jackknife `bbuvl choose-tiles` reads, eval/tile_choice.py),
from one COCO evaluation of all the photos.

Scoring each of the n sets of n - 1 photos afresh (`evaluate_predictions`: pairing, COCO's IoUs and matches twice, the
constant-box prior, the faults) cost n whole evaluations per candidate scale, quadratic in the validation photos. COCO
matches boxes within one photo and category, so a photo's matches do not depend on the other photos: they are computed
once (faster-coco-eval's per-photo evaluations), and only what ranks detections across photos, the accumulation, is
done again without each photo. The numbers are those of scoring each set afresh.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

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
    `position + 1`), from the photos' matches computed once here, as `run_cocoeval` computes them, and ranked once.

    Handing faster-coco-eval's accumulation every other photo's matches again for each photo left out cost ~10 us a
    photo and category, all in copying them into C++: 2.3 s of 2.8 at 200 photos (bench/jackknife.py). The matches
    are read out once instead (`_Ranked`), each category's detections ranked once over all the photos, and a photo is
    left out by dropping its own from that ranking, which is the order the accumulation would rank the others in; only
    the categories the photo holds are accumulated again, the others' AP being that of all the photos."""
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
    ranked = [_Ranked([evaluated[k * photos + i] for i in range(photos)], len(params.iouThrs), params.recThrs)
              for k in range(len(cat_ids))]

    def scores(precision: np.ndarray | None) -> dict[str, float | None]:
        if precision is None:
            return {"AP": None, "AP50": None}
        return {"AP": _mean_valid(precision), "AP50": _mean_valid(precision[t50])}

    every = [scores(r.precision()) for r in ranked]

    def accumulate(position: int) -> dict[int, dict[str, float | None]]:
        return {c: scores(r.precision(position)) if r.holds(position) else every[k]
                for k, (c, r) in enumerate(zip(cat_ids, ranked))}

    return accumulate


class _Ranked:
    """One category's matches over the photos, its detections ranked once: COCO's accumulation (faster-coco-eval's
    `Accumulate`, whole area range, 100 detections a photo) of all the photos, or of all but one, operation for
    operation, so the numbers are its own to the bit."""

    def __init__(self, evaluations: list[Any], thresholds: int, recall_points: np.ndarray):
        scores, photo, matched, ignored, self.valid_gt = [], [], [], [], np.zeros(len(evaluations), dtype=np.int64)
        for i, e in enumerate(evaluations):
            matches, _, found, gt_ignored, found_ignored = e.__getstate__()[:5]
            n = len(found)
            shown = min(n, _MAX_DETS)
            self.valid_gt[i] = len(gt_ignored) - sum(gt_ignored)
            scores += found[:shown]
            photo += [i] * shown
            matched.append(np.asarray(matches, dtype=np.int64).reshape(thresholds, n)[:, :shown])
            ignored.append(np.asarray(found_ignored, dtype=bool).reshape(thresholds, n)[:, :shown])
        # Decreasing score, ties in photo then detection order: the C++ stable sort on the concatenated lists
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        self.photo = np.asarray(photo, dtype=np.int64)[order]
        matched_all = np.concatenate(matched, axis=1)[:, order] if scores else np.zeros((thresholds, 0), dtype=np.int64)
        ignored_all = np.concatenate(ignored, axis=1)[:, order] if scores else np.zeros((thresholds, 0), dtype=bool)
        self.tp = (matched_all > 0) & ~ignored_all  # [T, N]
        self.fp = (matched_all == 0) & ~ignored_all
        self.recall_points = np.asarray(recall_points, dtype=np.float64)
        self.held = set(self.photo.tolist()) | set(np.flatnonzero(self.valid_gt).tolist())

    def holds(self, position: int) -> bool:
        """Whether the photo at `position` has a detection or a counted ground-truth box in this category."""
        return position in self.held

    def precision(self, without: int | None = None) -> np.ndarray | None:
        """Precision `[T, R]` at COCO's recall points of every photo but `without`; None where no ground truth counts."""
        valid_gt = int(self.valid_gt.sum()) - (int(self.valid_gt[without]) if without is not None else 0)
        if valid_gt == 0:
            return None
        keep = self.photo != without if without is not None else slice(None)
        tp_sum = np.cumsum(self.tp[:, keep], axis=1)
        fp_sum = np.cumsum(self.fp[:, keep], axis=1)
        recall = tp_sum / valid_gt
        counted = tp_sum + fp_sum
        precision = np.divide(tp_sum, counted, out=np.zeros(tp_sum.shape), where=counted > 0)
        precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        out = np.zeros((len(tp_sum), len(self.recall_points)))
        for t in range(len(tp_sum)):
            at = np.searchsorted(recall[t], self.recall_points, side="left")
            inside = at < recall.shape[1]
            out[t, inside] = precision[t, at[inside]]
        return out


def _mean_valid(x: np.ndarray) -> float | None:
    valid = x[x > -1]
    return float(valid.mean()) if valid.size else None


def _quiet(*_: Any) -> None:
    return None
