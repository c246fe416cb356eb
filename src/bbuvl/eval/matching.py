"""Per-image box matching and the error counts an engineer reads to see *how* a detector is wrong.

COCO AP says how good the ranking is; these counts say what to fix. For one photo:
- predictions are matched greedily, highest score first, each to the unmatched ground-truth box it
  overlaps most, class-agnostically, when IoU >= the threshold (`bbuvl eval --iou`);
- matched with the wrong full label -> mislabelled (its label accuracy is also scored per level);
- left over, a prediction and a ground-truth box with the same label (at the evaluated level) and
  IoU in [0.1, threshold) -> mislocated: the object was found but badly boxed;
- still left over: ground truth -> missed, predictions -> extra.
So every ground-truth box is matched, mislocated or missed, and every prediction matched,
mislocated or extra.

These functions take one photo and are the reference; `bbuvl eval` applies the same rules to every photo at
once (eval/match_many.py), and tests pin the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np

from bbuvl.data.boxes import box_iou
from bbuvl.data.labels import label_at_level
from bbuvl.data.text import SEP, label_key

MISLOCATED_MIN_IOU = 0.1
DUPLICATE_IOU = 0.9

# A dataset repeats a few dozen labels hundreds of thousands of times: cut each one once.
_cut = lru_cache(maxsize=4096)(label_at_level)


@dataclass
class ImageMatch:
    """How one photo's predictions relate to its ground truth; pairs are `(prediction, ground truth, IoU)` indices."""

    matched: list[tuple[int, int, float]] = field(default_factory=list)
    mislocated: list[tuple[int, int, float]] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)


def score_order(scores: Sequence[float]) -> list[int]:
    """Prediction indices by descending score (ties keep their original order)."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def match_image(
    gt_boxes: Sequence[Sequence[float]],
    gt_labels: Sequence[str],
    pred_boxes: Sequence[Sequence[float]],
    pred_labels: Sequence[str],
    pred_scores: Sequence[float],
    iou_threshold: float = 0.5,
    level: int | None = None,
    mislocated_min_iou: float = MISLOCATED_MIN_IOU,
) -> ImageMatch:
    """Match one photo's predictions to its ground truth (see the module docstring for the rules)."""
    with np.errstate(over="ignore", invalid="ignore"):  # a box of 1e300 pixels has IoU 0, without numpy's warning
        ious = box_iou(np.asarray(pred_boxes, dtype=np.float64), np.asarray(gt_boxes, dtype=np.float64))
    order = score_order(pred_scores)
    result = ImageMatch()
    gt_free = np.ones(len(gt_labels), dtype=bool)
    pred_free = np.ones(len(pred_labels), dtype=bool)
    for p in order:
        j = _best(ious[p], gt_free, lambda iou: iou >= iou_threshold)
        if j is not None:
            result.matched.append((p, j, float(ious[p, j])))
            gt_free[j] = pred_free[p] = False

    gt_names = [_cut(g, level) for g in gt_labels]
    for p in order:
        if not pred_free[p]:
            continue
        name = _cut(pred_labels[p], level)
        same = gt_free & np.array([g == name for g in gt_names], dtype=bool)
        j = _best(ious[p], same, lambda iou: mislocated_min_iou <= iou < iou_threshold)
        if j is not None:
            result.mislocated.append((p, j, float(ious[p, j])))
            gt_free[j] = pred_free[p] = False
    result.missed = [int(j) for j in np.flatnonzero(gt_free)]
    result.extra = [p for p in order if pred_free[p]]
    return result


def _best(row: np.ndarray, allowed: np.ndarray, accept) -> int | None:  # noqa: ANN001
    """Index of the highest-IoU allowed column that `accept`s, or None."""
    if not allowed.any():
        return None
    masked = np.where(allowed, row, -1.0)
    j = int(np.argmax(masked))
    return j if masked[j] >= 0 and accept(masked[j]) else None


def duplicate_predictions(
    boxes: Sequence[Sequence[float]], labels: Sequence[str], scores: Sequence[float], iou: float = DUPLICATE_IOU,
) -> list[int]:
    """Predictions that repeat a higher-scored one: same full label and IoU above `iou`."""
    with np.errstate(over="ignore", invalid="ignore"):
        ious = box_iou(np.asarray(boxes, dtype=np.float64), np.asarray(boxes, dtype=np.float64))
    order = score_order(scores)
    out = []
    for rank, p in enumerate(order):
        if any(labels[q] == labels[p] and ious[p, q] > iou for q in order[:rank]):
            out.append(p)
    return out


def label_levels(labels: Sequence[str]) -> int:
    """Depth of the deepest label (`category/attribute/state` -> 3)."""
    return max((label_key(label).count(SEP) + 1 for label in labels), default=1)


@dataclass
class MatchTotals:
    """Counts summed over photos, plus the label pairs of matched boxes (for label accuracy)."""

    gt: int = 0
    pred: int = 0
    matched: int = 0
    mislocated: int = 0
    mislabelled: int = 0
    missed: int = 0
    extra: int = 0
    duplicates: int = 0
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (predicted label, true label) of matched boxes

    def add(self, match: ImageMatch, gt_labels: Sequence[str], pred_labels: Sequence[str], duplicates: int) -> None:
        """Add one photo's match."""
        self.gt += len(gt_labels)
        self.pred += len(pred_labels)
        self.matched += len(match.matched)
        self.mislocated += len(match.mislocated)
        self.missed += len(match.missed)
        self.extra += len(match.extra)
        self.duplicates += duplicates
        for p, g, _ in match.matched:
            self.pairs.append((pred_labels[p], gt_labels[g]))
            self.mislabelled += pred_labels[p] != gt_labels[g]

    def errors(self) -> dict[str, int]:
        """The counts as they appear under `errors` in METRICS.json."""
        return {
            "missed": self.missed, "extra": self.extra, "mislocated": self.mislocated, "mislabelled": self.mislabelled,
            "matched": self.matched, "gt_objects": self.gt, "predicted_objects": self.pred,
        }

    def duplicate_rate(self) -> float | None:
        """Share of predictions that repeat a higher-scored one (None without predictions)."""
        return self.duplicates / self.pred if self.pred else None


def label_accuracy(pairs: Sequence[tuple[str, str]], levels: int) -> dict[str, float | int | None]:
    """Share of matched boxes whose label is right at each level 1..levels and in full (None without matches)."""
    out: dict[str, float | int | None] = {}
    n = len(pairs)
    for level in range(1, levels + 1):
        right = sum(_cut(p, level) == _cut(g, level) for p, g in pairs)
        out[f"level_{level}"] = right / n if n else None
    out["full"] = sum(p == g for p, g in pairs) / n if n else None
    out["matched_boxes"] = n
    return out


def image_f1(match: ImageMatch, gt_labels: Sequence[str], pred_labels: Sequence[str], level: int | None = None) -> float:
    """F1 of one photo: a true positive is a matched box with the right label at `level` (1.0 when both are empty)."""
    total = len(gt_labels) + len(pred_labels)
    if total == 0:
        return 1.0
    tp = sum(_cut(pred_labels[p], level) == _cut(gt_labels[g], level) for p, g, _ in match.matched)
    return 2 * tp / total
