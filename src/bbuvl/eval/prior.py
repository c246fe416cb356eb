"""The constant-box prior: the AP50 earned by answering every photo with one fixed box, whatever it shows.

A model's AP50 means something only above this floor: where boxes sit in the same place photo after
photo (a cabinet filling the frame), a detector that ignores the pixels still scores. `best_constant_box`
finds the box, in coordinates relative to each photo's size, with the highest class-agnostic AP50 on the
given photos, and scores it exactly as the project's COCO evaluation (`coco_metrics`) would, so the number
reads on the same scale as a model's.

How the constant box is emitted (docs/synthetic_scenes.md):
- class-agnostic: once per photo, score 1. All scores tie, and COCO ranks tied detections in photo order: the
  photos are put in `bbuvl eval`'s one order first (eval/order.py, by name), so the prior is what `bbuvl eval`
  reports for a model that answers every photo with this box, whatever order the ground truth lists them in;
- per label: once per label of the vocabulary (the labels present in the photos), score 1, evaluated
  class-aware: a label's AP50 is then the AP50 of the box on that label's objects alone, and the summary
  AP50 their mean. The extra copies are not counted against the class-agnostic number.

The search scores every candidate with a vectorised copy of COCO's AP50 for one detection per photo
(greedy match at IoU >= 0.5, precision made monotone, sampled at 101 recall points). A candidate is tested
only against the ground-truth boxes that could reach IoU 0.5 with it (`_TruthIndex`), not all of them.
The winner is scored by `_coco_ap50`, which repeats faster-coco-eval's arithmetic step for step (its box IoU
in xywh, its greedy match, its precision and recall), so it returns the numbers a full COCO evaluation of the
constant box returns, for a fraction of the time; tests/eval/test_prior.py pins the two equal.

The search keeps the box that scores highest in that order. With the order fixed, that is no longer the luck of a
file's line order: it is the most a constant answer earns from `bbuvl eval` on these photos, and a lower bar would let
one clear it (docs/eval.md, "Ties").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bbuvl.data.schema import ImageRecord
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.eval.order import photo_order

RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's recall thresholds
# Pruning uses a looser IoU than 0.5: in exact arithmetic a pair at IoU >= 0.5 passes every test below at 0.5,
# and the 0.05 of slack is ~10^14 times the rounding of the relative coordinates.
_PRUNE_IOU = 0.45
MIN_SIDE = 1e-3  # the shortest side, in parts of the photo's, a constant box may have
_ROWS = 64  # bands of box centre height the index sorts ground truth into
_CHUNK_CELLS = 1 << 20  # candidate x photo cells a chunk of the search holds (8 MB per float64 array)
_COCO_MAX_AREA = 1e5**2  # COCO's "all" area range ends here; beyond it `_coco_ap50` hands over to COCO itself


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


class _TruthIndex:
    """The ground truth as arrays, sorted so that the boxes a candidate could reach IoU 0.5 with are found fast.

    IoU >= t in 2-D implies IoU >= t along each axis (the 2-D ratio is at most either 1-D one), and a 1-D IoU >= t
    between a candidate side `c` and a ground-truth side `g` implies `t c <= g <= c / t` and centres at most
    `c (1 - t) / 2t` apart; all four hold in coordinates relative to the photo, where one candidate is one box.
    Boxes are sorted by band of centre height, then centre x, so a candidate reads a few contiguous runs.
    """

    def __init__(self, records: list[ImageRecord]):
        gt = [o.bbox_2d for r in records for o in r.objects]
        self.owner = np.array([i for i, r in enumerate(records) for _ in r.objects], dtype=np.int64)  # [G]
        self.sizes = np.array([[r.width, r.height] for r in records], dtype=np.float64)  # [N, 2] (w, h)
        self.gt = np.array(gt, dtype=np.float64).reshape(-1, 4)  # [G, 4] pixels, records order
        self.n = len(records)
        scale = np.tile(self.sizes[self.owner], 2)  # [G, 4]: the size of each ground truth's photo
        self.relative = self.gt / scale  # [G, 4]
        w, h = self.relative[:, 2] - self.relative[:, 0], self.relative[:, 3] - self.relative[:, 1]
        cx, cy = (self.relative[:, 0] + self.relative[:, 2]) / 2, (self.relative[:, 1] + self.relative[:, 3]) / 2
        key = self._band(cy) * 4 + self._x_key(cx)
        order = np.argsort(key, kind="stable")
        self.key, self.w, self.h, self.cx, self.cy = key[order], w[order], h[order], cx[order], cy[order]
        self.sorted_owner, self.sorted_gt, self.sorted_scale = self.owner[order], self.gt[order], scale[order]
        self.sorted_area = (self.sorted_gt[:, 2] - self.sorted_gt[:, 0]) * (self.sorted_gt[:, 3] - self.sorted_gt[:, 1])
        self.max_w, self.max_h = (float(w.max()), float(h.max())) if len(w) else (0.0, 0.0)

    @staticmethod
    def _band(y: np.ndarray | float) -> np.ndarray:
        return np.clip(np.floor(np.asarray(y) * _ROWS), 0, _ROWS - 1).astype(np.int64)

    @staticmethod
    def _x_key(x: np.ndarray | float) -> np.ndarray:
        # monotone in x and inside [0, 3], so that band * 4 + key orders by band, then x
        return np.clip(np.asarray(x, dtype=np.float64), -1.0, 2.0) + 1.0

    def _near(self, box: np.ndarray) -> np.ndarray:
        """Sorted positions of the ground truth that could reach IoU 0.5 with the relative `box` (a superset)."""
        t = _PRUNE_IOU
        bw, bh = box[2] - box[0], box[3] - box[1]
        if bw <= 0 or bh <= 0:  # a flat box meets a flat ground truth at 0 >= 0.5 * 0: test everything, as before
            return np.arange(len(self.key))
        if t * bw > self.max_w or t * bh > self.max_h:
            return np.zeros(0, dtype=np.int64)
        reach_x, reach_y = bw * (1 - t) / (2 * t), bh * (1 - t) / (2 * t)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        bands = np.arange(int(self._band(cy - reach_y)), int(self._band(cy + reach_y)) + 1)
        lo = np.searchsorted(self.key, bands * 4 + self._x_key(cx - reach_x), side="left")
        hi = np.searchsorted(self.key, bands * 4 + self._x_key(cx + reach_x), side="right")
        lengths = hi - lo
        idx = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        keep = ((self.w[idx] >= t * bw) & (self.w[idx] <= bw / t) & (self.h[idx] >= t * bh) & (self.h[idx] <= bh / t)
                & (np.abs(self.cy[idx] - cy) <= reach_y) & (np.abs(self.cx[idx] - cx) <= reach_x))
        return idx[keep]

    def hit_photos(self, box: np.ndarray) -> np.ndarray:
        """Photos where the relative `box` meets a ground-truth box at IoU >= 0.5, in their pixels (COCO's test)."""
        idx = self._near(box)
        gt, scale = self.sorted_gt[idx], self.sorted_scale[idx]
        cand = box[None, :] * scale  # [k, 4] in each photo's pixels
        iw = np.clip(np.minimum(cand[:, 2], gt[:, 2]) - np.maximum(cand[:, 0], gt[:, 0]), 0, None)
        ih = np.clip(np.minimum(cand[:, 3], gt[:, 3]) - np.maximum(cand[:, 1], gt[:, 1]), 0, None)
        inter = iw * ih
        union = (cand[:, 2] - cand[:, 0]) * (cand[:, 3] - cand[:, 1]) + self.sorted_area[idx] - inter
        return self.sorted_owner[idx[inter >= 0.5 * union]]  # IoU >= 0.5 without dividing


def constant_box_ap50(records: list[ImageRecord], boxes: np.ndarray) -> np.ndarray:
    """Class-agnostic AP50 `[C]` of each relative box `[C, 4]` emitted once per photo with score 1 (COCO's rules, the
    photos in `bbuvl eval`'s order)."""
    index = _TruthIndex(in_eval_order(records))
    if len(index.gt) == 0:
        raise ValueError("the photos have no ground-truth boxes: AP50 is undefined")
    return _search_ap50(index, boxes)


def in_eval_order(records: list[ImageRecord]) -> list[ImageRecord]:
    """The photos in the order `coco_evaluate` ranks tied detections in (eval/order.py), whatever order they came in."""
    return [records[i] for i in photo_order(records)]


def _search_ap50(index: _TruthIndex, boxes: np.ndarray, chunk: int = 256) -> np.ndarray:
    """`constant_box_ap50` on an index built once, `chunk` candidates at a time at most."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n, g = index.n, len(index.gt)
    # A chunk's cumulative counts, recall and precision are candidates x photos each: 256 rows of 16,000 photos held
    # ~180 MB of them at once, the peak of `bbuvl eval` on its own (bench/eval_memory.py). Rows are independent.
    chunk = max(1, min(chunk, _CHUNK_CELLS // max(n, 1)))
    out = np.empty(len(boxes))
    for c0 in range(0, len(boxes), chunk):
        part = boxes[c0:c0 + chunk]
        tp = np.zeros((len(part), n), dtype=bool)  # one detection per photo: a hit if any of its gt matches
        for k, box in enumerate(part):
            tp[k, index.hit_photos(box)] = True
        ctp = np.cumsum(tp, axis=1, dtype=np.float64)
        recall = ctp / g
        precision = ctp / (np.arange(1, n + 1) + np.spacing(1))
        precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        for k in range(len(part)):
            idx = np.searchsorted(recall[k], RECALL_POINTS, side="left")
            out[c0 + k] = np.where(idx < n, precision[k, np.minimum(idx, n - 1)], 0.0).mean()
    return out


def _candidates(index: _TruthIndex, max_gt_candidates: int, grid_step: float, seed: int) -> np.ndarray:
    """Relative boxes to try: ground-truth boxes (deduplicated, subsampled), their mean, and a coarse grid."""
    rel = np.unique(np.round(index.relative, 3), axis=0)
    # A part under a thousandth of the photo's side rounds to a box without area, which no move of `_refine` may start
    # from (each keeps one side at zero) and no constant box could be
    rel = rel[(rel[:, 2] - rel[:, 0] > MIN_SIDE) & (rel[:, 3] - rel[:, 1] > MIN_SIDE)]
    if len(rel) > max_gt_candidates:
        rel = rel[np.sort(np.random.default_rng(seed).choice(len(rel), max_gt_candidates, replace=False))]
    ticks = np.round(np.arange(0.0, 1.0 + 1e-9, grid_step), 6)
    spans = [(a, b) for i, a in enumerate(ticks) for b in ticks[i + 1:]]
    grid = np.array([(x1, y1, x2, y2) for x1, x2 in spans for y1, y2 in spans])
    return np.concatenate([rel, rel.mean(axis=0, keepdims=True), grid]) if len(rel) else grid


def _refine(index: _TruthIndex, box: np.ndarray, score: float, steps: tuple[float, ...]) -> tuple[np.ndarray, float, int]:
    """Coordinate-wise hill climbing from `box` while a move of one side by a step raises AP50."""
    tried = 0
    for _ in range(50):
        moves = []
        for side in range(4):
            for s in steps:
                for sign in (-1.0, 1.0):
                    m = box.copy()
                    m[side] = np.clip(m[side] + sign * s, 0.0, 1.0)
                    if m[2] - m[0] > MIN_SIDE and m[3] - m[1] > MIN_SIDE:
                        moves.append(m)
        if not moves:
            break
        ap = _search_ap50(index, np.array(moves))
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


def _coco_precision(tp: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """COCO's interpolated precision `[K, 101]` for one score-1 detection per photo; tp `[K, N]`, n_gt `[K]`.

    As faster-coco-eval's accumulate: tied scores keep photo order, precision tp / detections and recall
    tp / ground truth in doubles, precision made monotone from the end, read at the first recall >= each point.
    """
    k, n = tp.shape
    ctp = np.cumsum(tp, axis=1)
    precision = ctp / np.arange(1, n + 1)
    recall = ctp / n_gt[:, None]
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    out = np.empty((k, len(RECALL_POINTS)))
    for row in range(k):
        idx = np.searchsorted(recall[row], RECALL_POINTS, side="left")
        out[row] = np.where(idx < n, precision[row, np.minimum(idx, n - 1)], 0.0)
    return out


def _coco_ap50(index: _TruthIndex, label_of: np.ndarray, n_labels: int, box: tuple[float, ...]) -> tuple[float, np.ndarray]:
    """What COCO answers for `box` once per photo: (class-agnostic AP50, precision `[labels, 101]` per label at IoU 0.5).

    The boxes are written as `coco_detections` and `records_to_coco` write them (xyxy pixels, then xywh), and
    their IoU is faster-coco-eval's bbox IoU operation for operation, so ties at exactly 0.5 fall the same way.
    """
    w, h = index.sizes[:, 0], index.sizes[:, 1]
    x1, y1, x2, y2 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    dx, dy, dw, dh = x1, y1, x2 - x1, y2 - y1  # [N]
    g = index.gt
    gx, gy, gw, gh = g[:, 0], g[:, 1], g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]  # [G]
    o = index.owner
    iw = np.minimum(dx[o] + dw[o], gx + gw) - np.maximum(dx[o], gx)
    ih = np.minimum(dy[o] + dh[o], gy + gh) - np.maximum(dy[o], gy)
    inter = iw * ih
    union = dw[o] * dh[o] + gw * gh - inter
    overlap = (iw > 0) & (ih > 0)
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=overlap)
    hit = overlap & (iou >= 0.5)
    agnostic = np.zeros((1, index.n), dtype=bool)
    agnostic[0, o[hit]] = True
    per_label = np.zeros((n_labels, index.n), dtype=bool)
    per_label[label_of[hit], o[hit]] = True
    agnostic_ap = float(_coco_precision(agnostic, np.array([len(g)]))[0].mean())
    return agnostic_ap, _coco_precision(per_label, np.bincount(label_of, minlength=n_labels))


def _beyond_coco_areas(index: _TruthIndex, box: tuple[float, ...]) -> bool:
    """True when a box is larger than COCO's "all" area range: COCO ignores it, which `_coco_ap50` does not repeat."""
    g = index.gt
    w, h = index.sizes[:, 0], index.sizes[:, 1]
    det_area = (box[2] * w - box[0] * w) * (box[3] * h - box[1] * h)
    return bool(((g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) > _COCO_MAX_AREA).any() or (det_area > _COCO_MAX_AREA).any())


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
    records = in_eval_order(records)  # all scores tie: COCO ranks them in photo order
    index = _TruthIndex(records)
    cands = _candidates(index, max_gt_candidates, grid_step, seed)
    ap = _search_ap50(index, cands)
    start = int(np.argmax(ap))
    box, _, tried = _refine(index, cands[start].copy(), float(ap[start]), refine_steps)
    best = tuple(round(float(v), 4) for v in box)  # the box reported is the box scored below
    descs = [o.desc for r in records for o in r.objects]
    labels = sorted(set(descs))
    if _beyond_coco_areas(index, best):
        return _prior_by_coco(records, best, labels, len(cands) + tried)
    label_id = {label: i for i, label in enumerate(labels)}
    agnostic, precision = _coco_ap50(index, np.array([label_id[d] for d in descs], dtype=np.int64), len(labels), best)
    valid = precision.T[precision.T > -1]  # as COCO's summary reads it: recall points, then categories
    return ConstantBoxPrior(
        box=best,  # type: ignore[arg-type]
        ap50_agnostic=agnostic,
        ap50=float(np.mean(valid)) if valid.size else None,
        ap50_per_label={label: float(row[row > -1].mean()) for label, row in zip(labels, precision)},
        candidates=len(cands) + tried,
    )


def _prior_by_coco(records: list[ImageRecord], best: tuple[float, ...], labels: list[str], candidates: int) -> ConstantBoxPrior:
    """The prior scored by full COCO evaluations (photos so large that COCO's area range matters)."""
    agnostic = coco_evaluate(records, constant_box_predictions(records, best, labels[:1]))  # type: ignore[arg-type]
    aware = coco_evaluate(records, constant_box_predictions(records, best, labels))  # type: ignore[arg-type]
    return ConstantBoxPrior(
        box=best,  # type: ignore[arg-type]
        ap50_agnostic=float(agnostic.agnostic["AP50"] or 0.0),
        ap50=aware.summary["AP50"],
        ap50_per_label={label: aware.per_category[label]["AP50"] for label in labels},
        candidates=candidates,
    )
