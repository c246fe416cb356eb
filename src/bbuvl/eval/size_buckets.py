"""AP and recall by object size in the model's frame: how many vision tokens an object covers.

COCO's small/medium/large are pixel areas of the stored photo (32², 96²). They mean nothing across frames: a
screw of 40x40 stored pixels is two tokens in a close-up shown at full size and a tenth of one in a phone photo
shrunk to 0.28. What decides whether a model can see an object is how many of its vision tokens the object
covers at the frame the checkpoint predicts at, so the buckets here are in tokens: the box's area in frame pixels
over one token's cell (factor² pixels). The COCO evaluation runs once more with every box's area set to its
token count and the buckets as area ranges, so the numbers are COCO's own AP at IoU 0.5 and recall at 100
detections, per bucket and per label (docs/tiles.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.schema import ImageRecord
from bbuvl.eval.coco_metrics import coco_detections, coco_ground_truth, evaluate_by_category

# (name, lower, upper) in vision tokens covered at the frame; an object below one token is "sub-token".
TOKEN_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("<1 token", 0.0, 1.0),
    ("1-4 tokens", 1.0, 4.0),
    ("4-16 tokens", 4.0, 16.0),
    (">=16 tokens", 16.0, math.inf),
)
_HUGE = 1e10  # COCO wants finite area bounds


@dataclass
class SizeResult:
    """Per bucket: objects, AP50 (class-aware mean over labels, and class-agnostic) and recall at IoU 0.5 whatever
    the label (was the object found at all); per label: objects, AP50 and recall of that label."""

    buckets: dict[str, dict[str, Any]]
    per_label: dict[str, dict[str, dict[str, Any]]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"buckets": self.buckets, "per_label": self.per_label}


def token_area(box: Sequence[float], size: tuple[int, int], contract: CoordinateContract) -> float:
    """Vision tokens a stored-pixel box of a `size` photo covers at the contract's frame."""
    fw, fh = contract.model_size(size)
    w = max(0.0, box[2] - box[0]) * fw / size[0]
    h = max(0.0, box[3] - box[1]) * fh / size[1]
    return w * h / contract.factor ** 2


def _evaluate(gt: dict[str, Any], dets: list[dict[str, Any]]) -> COCOeval_faster:
    names = ["all"] + [name for name, _, _ in TOKEN_BUCKETS]
    # COCO's area ranges hold both ends; the buckets hold their lower one only (`lo <= area < hi`, as counted in
    # `size_metrics`): an object of exactly 4 tokens, common at whole multiples of the cell, was scored in two.
    ranges = [[0.0, _HUGE]] + [[lo, float(np.nextafter(min(hi, _HUGE), 0.0))] for _, lo, hi in TOKEN_BUCKETS]
    coco_gt = COCO({**gt, "annotations": [dict(a) for a in gt["annotations"]]}, print_function=lambda *a, **k: None)
    coco_dt = COCO({"images": gt["images"], "categories": gt["categories"],
                    "annotations": [{**d, "id": i, "iscrowd": 0} for i, d in enumerate(dets, start=1)]},
                   print_function=lambda *a, **k: None)
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
    ev.params.iouThrs = np.array([0.5])
    ev.params.areaRng = ranges
    ev.params.areaRngLbl = names
    evaluate_by_category(ev)
    return ev


def _mean(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def size_metrics(records: list[ImageRecord], predictions: Sequence[Sequence[dict[str, Any]]],
                 contract: CoordinateContract, level: int | None = None) -> SizeResult:
    """AP50 and recall per token bucket (class-aware and class-agnostic) and per label, on `records`."""
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} ground-truth photos but {len(predictions)} prediction lists")
    gt = coco_ground_truth(records, level)
    dets = coco_detections(gt, predictions, level)
    sizes = {i: r.size for i, r in enumerate(records, start=1)}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        a["area"] = token_area([x, y, x + w, y + h], sizes[a["image_id"]], contract)
    for d in dets:
        x, y, w, h = d["bbox"]
        d["area"] = token_area([x, y, x + w, y + h], sizes[d["image_id"]], contract)
    one = [{"id": 1, "name": "object", "supercategory": "object"}]
    aware = _evaluate(gt, dets)
    agnostic = _evaluate({**gt, "categories": one, "annotations": [{**a, "category_id": 1} for a in gt["annotations"]]},
                         [{**d, "category_id": 1} for d in dets])
    names = {c["id"]: c["name"] for c in gt["categories"]}
    counts: dict[tuple[int, int], int] = {}
    for a in gt["annotations"]:
        for b, (_, lo, hi) in enumerate(TOKEN_BUCKETS):
            if lo <= a["area"] < hi:
                counts[(a["category_id"], b)] = counts.get((a["category_id"], b), 0) + 1
    m = len(aware.params.maxDets) - 1  # 100 detections
    buckets: dict[str, dict[str, Any]] = {}
    per_label: dict[str, dict[str, dict[str, Any]]] = {}
    for b, (name, _, _) in enumerate(TOKEN_BUCKETS, start=1):
        objects = sum(n for (_, bb), n in counts.items() if bb == b - 1)
        buckets[name] = {
            "objects": objects,
            "AP50": _mean(aware.eval["precision"][0, :, :, b, m].mean(axis=0)) if objects else None,
            "AP50_agnostic": _mean(agnostic.eval["precision"][0, :, 0, b, m]) if objects else None,
            "recall": _mean(agnostic.eval["recall"][0, 0, b, m].reshape(1)) if objects else None,
        }
        for k, cid in enumerate(aware.params.catIds):
            n = counts.get((cid, b - 1), 0)
            if not n:
                continue
            per_label.setdefault(names[cid], {})[name] = {
                "objects": n,
                "AP50": _mean(aware.eval["precision"][0, :, k, b, m]),
                "recall": _mean(aware.eval["recall"][0, k, b, m].reshape(1)),
            }
    return SizeResult(buckets, per_label)
