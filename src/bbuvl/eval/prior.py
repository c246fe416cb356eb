"""The constant-box prior: the AP50 earned by answering every photo with one fixed box, whatever it shows.

A model's AP50 means something only above this floor: where boxes sit in the same place photo after
photo (a cabinet filling the frame), a detector that ignores the pixels still scores. `best_constant_box`
finds the box, in coordinates relative to each photo's size, with the highest class-agnostic AP50 on the
given photos, and scores it with the project's own COCO evaluation (`coco_metrics`), so the number reads
on the same scale as a model's.

How the constant box is emitted (docs/synthetic_scenes.md):
- class-agnostic: once per photo, score 1. All scores tie, and COCO ranks tied detections in photo order,
  as it would for a model that answers every photo with the same confidence;
- per label: once per label of the vocabulary (the labels present in the photos), score 1, evaluated
  class-aware: a label's AP50 is then the AP50 of the box on that label's objects alone, and the summary
  AP50 their mean. The extra copies are not counted against the class-agnostic number.

The search scores every candidate with a vectorised copy of COCO's AP50 for one detection per photo
(greedy match at IoU >= 0.5, precision made monotone, sampled at 101 recall points), equal to
faster-coco-eval's; only the winner goes through the full evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bbuvl.data.schema import ImageRecord
from bbuvl.eval.coco_metrics import coco_evaluate

RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's recall thresholds
_CHUNK = 4_000_000  # candidate x ground-truth IoUs computed at once (~100 MB of float64 temporaries)


@dataclass(frozen=True)
class ConstantBoxPrior:
    """The best constant box and what it scores.

    box: relative `(x1, y1, x2, y2)` in [0, 1], applied to every photo in its own size.
    ap50_agnostic: class-agnostic AP50 (the box once per photo).
    ap50: class-aware AP50, the mean over labels; ap50_per_label: label -> AP50 (the box once per label).
    candidates: how many boxes were scored.
    """

    box: tuple[float, float, float, float]
    ap50_agnostic: float
    ap50: float | None
    ap50_per_label: dict[str, float | None]
    candidates: int


def _ground_truth(records: list[ImageRecord]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth in pixels `[G, 4]`, the photo index of each `[G]`, and photo sizes `[N, 2]` (w, h)."""
    boxes = [o.bbox_2d for r in records for o in r.objects]
    owner = [i for i, r in enumerate(records) for _ in r.objects]
    sizes = np.array([[r.width, r.height] for r in records], dtype=np.float64)
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(owner, dtype=np.int64), sizes


def constant_box_ap50(records: list[ImageRecord], boxes: np.ndarray) -> np.ndarray:
    """Class-agnostic AP50 `[C]` of each relative box `[C, 4]` emitted once per photo with score 1 (COCO's rules)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    gt, owner, sizes = _ground_truth(records)
    if len(gt) == 0:
        raise ValueError("the photos have no ground-truth boxes: AP50 is undefined")
    n, g = len(records), len(gt)
    scale = np.tile(sizes[owner], 2)  # [G, 4]: the size of each ground truth's photo
    gt_area = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    # photos with ground truth, as segments of the owner-sorted gt list (records order = owner order)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    photos_with_gt = owner[starts]
    out = np.empty(len(boxes))
    step = max(1, _CHUNK // g)
    for c0 in range(0, len(boxes), step):
        cand = boxes[c0:c0 + step, None, :] * scale[None]  # [c, G, 4] in each photo's pixels
        iw = np.clip(np.minimum(cand[..., 2], gt[:, 2]) - np.maximum(cand[..., 0], gt[:, 0]), 0, None)
        ih = np.clip(np.minimum(cand[..., 3], gt[:, 3]) - np.maximum(cand[..., 1], gt[:, 1]), 0, None)
        inter = iw * ih
        union = (cand[..., 2] - cand[..., 0]) * (cand[..., 3] - cand[..., 1]) + gt_area - inter
        hit = inter >= 0.5 * union  # IoU >= 0.5, COCO's test, without dividing
        tp = np.zeros((len(cand), n), dtype=bool)
        tp[:, photos_with_gt] = np.logical_or.reduceat(hit, starts, axis=1)  # one detection: a hit if any gt matches
        ctp = np.cumsum(tp, axis=1, dtype=np.float64)
        recall = ctp / g
        precision = ctp / (np.arange(1, n + 1) + np.spacing(1))
        precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        for k in range(len(cand)):
            idx = np.searchsorted(recall[k], RECALL_POINTS, side="left")
            out[c0 + k] = np.where(idx < n, precision[k, np.minimum(idx, n - 1)], 0.0).mean()
    return out


def _candidates(records: list[ImageRecord], max_gt_candidates: int, grid_step: float, seed: int) -> np.ndarray:
    """Relative boxes to try: ground-truth boxes (deduplicated, subsampled), their mean, and a coarse grid."""
    gt, owner, sizes = _ground_truth(records)
    rel = np.unique(np.round(gt / np.tile(sizes[owner], 2), 3), axis=0)
    if len(rel) > max_gt_candidates:
        rel = rel[np.sort(np.random.default_rng(seed).choice(len(rel), max_gt_candidates, replace=False))]
    ticks = np.round(np.arange(0.0, 1.0 + 1e-9, grid_step), 6)
    spans = [(a, b) for i, a in enumerate(ticks) for b in ticks[i + 1:]]
    grid = np.array([(x1, y1, x2, y2) for x1, x2 in spans for y1, y2 in spans])
    return np.concatenate([rel, rel.mean(axis=0, keepdims=True), grid])


def _refine(records: list[ImageRecord], box: np.ndarray, score: float, steps: tuple[float, ...]) -> tuple[np.ndarray, float, int]:
    """Coordinate-wise hill climbing from `box` while a move of one side by a step raises AP50."""
    tried = 0
    for _ in range(50):
        moves = []
        for side in range(4):
            for s in steps:
                for sign in (-1.0, 1.0):
                    m = box.copy()
                    m[side] = np.clip(m[side] + sign * s, 0.0, 1.0)
                    if m[2] - m[0] > 1e-3 and m[3] - m[1] > 1e-3:
                        moves.append(m)
        ap = constant_box_ap50(records, np.array(moves))
        tried += len(moves)
        best = int(np.argmax(ap))
        if ap[best] <= score:
            break
        box, score = moves[best], float(ap[best])
    return box, score, tried


def constant_box_predictions(records: list[ImageRecord], box: tuple[float, float, float, float], labels: list[str],
                             score: float = 1.0) -> list[list[dict[str, Any]]]:
    """The relative `box` in each photo's pixels, once per label, as prediction lists for `coco_evaluate`."""
    out = []
    for r in records:
        px = [box[0] * r.width, box[1] * r.height, box[2] * r.width, box[3] * r.height]
        out.append([{"bbox_2d": px, "label": label, "score": score} for label in labels])
    return out


def best_constant_box(
    records: list[ImageRecord],
    max_gt_candidates: int = 300,
    grid_step: float = 0.125,
    refine_steps: tuple[float, ...] = (0.01, 0.03),
    seed: int = 0,
) -> ConstantBoxPrior:
    """The relative box with the highest class-agnostic AP50 when emitted for every photo, and its COCO AP50s."""
    if not any(r.objects for r in records):
        raise ValueError("the photos have no ground-truth boxes: there is no prior to measure")
    cands = _candidates(records, max_gt_candidates, grid_step, seed)
    ap = constant_box_ap50(records, cands)
    start = int(np.argmax(ap))
    box, _, tried = _refine(records, cands[start].copy(), float(ap[start]), refine_steps)
    best = tuple(round(float(v), 4) for v in box)  # the box reported is the box scored below
    labels = sorted({o.desc for r in records for o in r.objects})
    agnostic = coco_evaluate(records, constant_box_predictions(records, best, labels[:1]))  # type: ignore[arg-type]
    aware = coco_evaluate(records, constant_box_predictions(records, best, labels))  # type: ignore[arg-type]
    return ConstantBoxPrior(
        box=best,  # type: ignore[arg-type]
        ap50_agnostic=float(agnostic.agnostic["AP50"] or 0.0),
        ap50=aware.summary["AP50"],
        ap50_per_label={label: aware.per_category[label]["AP50"] for label in labels},
        candidates=len(cands) + tried,
    )
