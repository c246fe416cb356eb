"""Which predictions repeat a higher-ranked one (matching.py's `duplicate_predictions`) for every photo at once.

A prediction repeats when a higher-ranked prediction of its photo with the same full label overlaps it at IoU above
the threshold t. Such a pair is close in all four coordinates: IoU <= the ratio of the widths (and of the heights),
and IoU <= the boxes' IoU along x, so |x1_a - x1_b| < (1 - t) / t * the narrower width (the same along y). Boxes
are put in buckets by label, log-width and log-height (classes a factor 1/t wide, so a repeat lies in the same or
the next class) and by cells of x1 and y1 twice the widest reach of the classes that look into them, so a box's
repeats lie in at most 3 x 3 x 2 x 2 buckets. Inside a bucket boxes are sorted by rank: the boxes ranked above one
are a prefix of each bucket, read best first, so a crowd of boxes over one object finds its repeat at the first
look and 100,000 of them cost about one comparison each, where comparing every close pair cost 10^10 pairs.
Each comparison is `pair_iou`'s, so thresholds fall exactly as in `duplicate_predictions`.
"""

from __future__ import annotations

import numpy as np

_SLACK = 1 + 1e-6  # widens every bound past the rounding of the floats it is computed from
_CHUNK = 1 << 14  # boxes whose buckets are searched together (36 buckets each)
_LOOKS = 1 << 20  # comparisons per step of the walk down the buckets
_MIX = np.uint64(0x9E3779B97F4A7C15)


def pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of broadcast `[..., 4]` xyxy boxes, operation for operation `bbuvl.data.boxes.box_iou` (0 where both empty)."""
    with np.errstate(over="ignore", invalid="ignore"):  # a box of 1e300 pixels overflows to IoU 0, as in box_iou
        area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
        area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
        lt = np.maximum(a[..., :2], b[..., :2])
        rb = np.minimum(a[..., 2:], b[..., 2:])
        wh = np.clip(rb - lt, 0, None)
        inter = wh[..., 0] * wh[..., 1]
        union = area_a + area_b - inter
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def repeated(boxes: np.ndarray, group: np.ndarray, rank: np.ndarray, iou: float) -> np.ndarray:
    """Per box: does a box of its group (photo and full label) with a lower rank overlap it at IoU above `iou`?

    `boxes` `[M, 4]` finite xyxy, `group` and `rank` `[M]` integers (ranks distinct within a group).
    """
    if not 0 < iou < 1:
        raise ValueError(f"duplicate IoU must lie in (0, 1), got {iou}")
    out = np.zeros(len(boxes), dtype=bool)
    w = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
    h = np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    with np.errstate(over="ignore"):
        area = w * h
    # An empty box, or one whose area overflows, has IoU 0 with every box: it neither repeats nor is repeated.
    live = np.flatnonzero((area > 0) & np.isfinite(area))
    if len(live) < 2:
        return out
    buckets = _Buckets(boxes[live], w[live], h[live], group[live], rank[live], iou)
    for first in range(0, len(live), _CHUNK):
        mine = np.arange(first, min(first + _CHUNK, len(live)))
        out[live[mine[buckets.repeats(mine)]]] = True
    return out


class _Buckets:
    """The live boxes sorted by bucket, then rank; `repeats` answers for some of them."""

    def __init__(self, boxes: np.ndarray, w: np.ndarray, h: np.ndarray, group: np.ndarray, rank: np.ndarray,
                 iou: float) -> None:
        self.boxes, self.group, self.rank, self.iou = boxes, group, rank, iou
        self.reach = (1 - iou) / iou * _SLACK  # a repeat's x1 lies within reach * width, its y1 within reach * height
        self.step = -np.log(iou) * _SLACK  # class width in log side: a repeat's side is within a factor 1 / iou
        # Sides far below the photo's coordinates share the lowest class, so that x1 / cell stays below 2^35 and
        # its rounding never moves a window past two cells; sides below 1e-140 too, whose areas lose precision.
        scale = float(np.abs(boxes).max())
        lowest = max(scale * 2.0 ** -36 / self.reach, 1e-140)
        self.sx, self.sy = self._class(w, lowest), self._class(h, lowest)
        cx = _cell(boxes[:, 0], self._cell_size(self.sx))
        cy = _cell(boxes[:, 1], self._cell_size(self.sy))
        key = _hash(group, self.sx, self.sy, cx, cy)
        self.order = np.lexsort((rank, key))
        self.keys, self.first = np.unique(key[self.order], return_index=True)
        self.first = np.r_[self.first, len(key)]
        self.span = int(rank.max()) + 1
        self.sorted_rank = np.searchsorted(self.keys, key[self.order]) * self.span + rank[self.order]

    def _class(self, side: np.ndarray, lowest: float) -> np.ndarray:
        return np.floor(np.log(np.maximum(side, lowest)) / self.step).astype(np.int64)

    def _cell_size(self, cls: np.ndarray) -> np.ndarray:
        """Cells of a class: twice the reach of the widest side that looks into it (one class above), so a box's
        window [x1 - reach, x1 + reach] spans at most two cells."""
        with np.errstate(over="ignore"):
            return 2 * self.reach * np.exp((cls + 2) * self.step) * 1.01

    def repeats(self, mine: np.ndarray) -> np.ndarray:
        """For the boxes `mine` (indices into the live boxes): is each one a repeat?"""
        segments = self._segments(mine)
        found = np.zeros(len(mine), dtype=bool)
        p, start, length = segments
        look = 1
        while len(p):
            # Read `look` boxes down each bucket (the best ranked first), doubling while few buckets are left open.
            take = np.minimum(length, look)
            who = np.repeat(p, take)
            at = np.repeat(start - np.cumsum(take) + take, take) + np.arange(int(take.sum()))
            q = self.order[at]
            box_p = self.boxes[mine[who]]
            hit = (self.group[q] == self.group[mine[who]]) & (pair_iou(box_p, self.boxes[q]) > self.iou)
            found[who[hit]] = True
            open_ = ~found[p] & (length > take)
            p, start, length = p[open_], start[open_] + take[open_], length[open_] - take[open_]
            look = max(1, min(look * 2, _LOOKS // max(len(p), 1)))
        return found

    def _segments(self, mine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each box of `mine` and each bucket its repeats may lie in: (position in `mine`, first, count) of the
        bucket's boxes ranked above it."""
        b = self.boxes[mine]
        rx = self.reach * (b[:, 2] - b[:, 0])
        ry = self.reach * (b[:, 3] - b[:, 1])
        who, first, count = [], [], []
        for dx in (0, -1, 1):
            sx = self.sx[mine] + dx
            size_x = self._cell_size(sx)
            lo_x, hi_x = _cell(b[:, 0] - rx, size_x), _cell(b[:, 0] + rx, size_x)
            for dy in (0, -1, 1):
                sy = self.sy[mine] + dy
                size_y = self._cell_size(sy)
                lo_y, hi_y = _cell(b[:, 1] - ry, size_y), _cell(b[:, 1] + ry, size_y)
                for cx, cy, wanted in ((lo_x, lo_y, np.ones(len(mine), dtype=bool)), (hi_x, lo_y, hi_x != lo_x),
                                       (lo_x, hi_y, hi_y != lo_y), (hi_x, hi_y, (hi_x != lo_x) & (hi_y != lo_y))):
                    key = _hash(self.group[mine], sx, sy, cx, cy)
                    at = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
                    there = np.flatnonzero(wanted & (self.keys[at] == key))
                    at = at[there]
                    start = self.first[at]
                    count_ = np.searchsorted(self.sorted_rank, at * self.span + self.rank[mine[there]]) - start
                    who.append(there[count_ > 0])
                    first.append(start[count_ > 0])
                    count.append(count_[count_ > 0])
        return np.concatenate(who), np.concatenate(first), np.concatenate(count)


def _cell(x: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The cell of each coordinate: floor(x / size), an infinite cell size making one cell of everything."""
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.nan_to_num(x / size, nan=0.0, posinf=2.0 ** 62, neginf=-(2.0 ** 62))
    return np.floor(np.clip(q, -(2.0 ** 62), 2.0 ** 62)).astype(np.int64)


def _hash(*columns: np.ndarray) -> np.ndarray:
    """One 64-bit key per row of integer columns. Two buckets sharing a key only make more boxes compared (the
    group and the IoU are checked for each), never a repeat missed."""
    h = np.zeros(len(columns[0]), dtype=np.uint64)
    for c in columns:
        h = (h ^ c.astype(np.int64).view(np.uint64)) * _MIX
        h ^= h >> np.uint64(29)
    return h
