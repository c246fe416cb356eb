"""Thin parts from the tiles: a whole-pass box of a long thin part takes its short side and its state from the tiles.

A long thin part (an air baffle across a cabinet: 1,400 x 120 pixels of a 1792x1344 photo) is longer than any tile,
so the whole pass answers for it (infer/tiles.py, `answering`). But the whole pass sees its short side at about one
model cell: its boxes come out twice as tall as the part (IoU under 0.5), and it barely tells an installed baffle from
a missing one. A tile sees the same part magnified, cut into pieces along its long side and whole across it; the
pieces' short side is right, and their labels tell the state apart (docs/tiles.md, "Thin parts from the tiles").

For a whole-pass box of a refined category, the pieces are the tiles' boxes of the same category (any state) that lie
near it, overlap it across its short side, and are not cut by their tile's inner edges across that side. The box's
short side becomes the pieces' (their extents averaged, weighted by score); a label's score becomes the larger of its
own and its best same-label piece's. Which categories gain is measured per checkpoint (`bbuvl choose-tiles`): for BBUs
the same rule lost AP, for air baffles it gained 0.4 (docs/faults_learning.md, "Thin parts from the tiles").
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

import numpy as np

from bbuvl.data.labels import label_at_level

if TYPE_CHECKING:
    from bbuvl.infer.tiles import TiledDetection

ACROSS_OVERLAP = 0.3  # a piece's extent across the short side must overlap the whole box's by this IoU (one axis)


def span_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two intervals."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def short_axis(box: Sequence[float]) -> int:
    """The axis a box's short side runs along: 1 (y) for a box at least as wide as tall, else 0 (x)."""
    return 1 if box[2] - box[0] >= box[3] - box[1] else 0


def pieces_of(box: Sequence[float], category: str, tiles: Sequence["TiledDetection"]) -> list["TiledDetection"]:
    """The tiles' boxes of `category` that lie within half the short side of `box`, overlap it across its short side by
    at least ACROSS_OVERLAP, and are whole across that side in their tile."""
    x1, y1, x2, y2 = box
    axis = short_axis(box)
    grow = 0.5 * min(x2 - x1, y2 - y1)
    lo, hi = axis, axis + 2
    kept = []
    for t in tiles:
        b = t.bbox_2d
        if t.whole or label_at_level(t.label, 1) != category or t.cut_across[axis]:
            continue
        if b[0] < x1 - grow or b[1] < y1 - grow or b[2] > x2 + grow or b[3] > y2 + grow:
            continue
        if span_iou((b[lo], b[hi]), (box[lo], box[hi])) >= ACROSS_OVERLAP:
            kept.append(t)
    return kept


def refine_thin(found: Sequence["TiledDetection"], tiles: Sequence["TiledDetection"],
                categories: Sequence[str]) -> list["TiledDetection"]:
    """`found` with each whole-pass box of `categories` (first label level) given its pieces' short side and, per
    label, the best same-label piece's score when higher; other boxes unchanged. `tiles`: every box the tiles found,
    those the merge drops included."""
    wanted = set(categories)
    if not wanted:
        return list(found)
    out = []
    for d in found:
        category = label_at_level(d.label, 1)
        if not d.whole or category not in wanted:
            out.append(d)
            continue
        pieces = pieces_of(d.bbox_2d, category, tiles)
        if not pieces:
            out.append(d)
            continue
        lo = short_axis(d.bbox_2d)
        hi = lo + 2
        boxes = np.array([p.bbox_2d for p in pieces], dtype=np.float64)  # [P, 4]
        weights = np.array([p.score for p in pieces], dtype=np.float64) + 1e-6  # [P]
        box = list(d.bbox_2d)
        box[lo] = float(np.average(boxes[:, lo], weights=weights))
        box[hi] = float(np.average(boxes[:, hi], weights=weights))
        score = max([d.score] + [p.score for p in pieces if p.label == d.label])
        out.append(replace(d, bbox_2d=box, score=score))
    return out
