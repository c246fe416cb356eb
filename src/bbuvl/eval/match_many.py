"""`match_image` and `duplicate_predictions` (matching.py) for every photo of an evaluation at once.

The rules are matching.py's, photo by photo; only the loop differs. Greedy matching is sequential within a
photo (each prediction takes what the higher-scored ones left) but independent across photos, so round r
matches the r-th highest-scored prediction of every photo together: a few numpy steps per box of the longest
answer, instead of a Python loop per box. Photos are padded to the largest one of their chunk, and chunks hold
photos of similar size, so one crowded photo pads only itself. IoUs are `box_iou`'s, operation for operation,
so thresholds and ties fall as they do in matching.py; tests/eval/test_match_many.py pins the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from bbuvl.eval.matching import DUPLICATE_IOU, MISLOCATED_MIN_IOU, ImageMatch, MatchTotals, _cut
from bbuvl.eval.repeats import pair_iou as _iou
from bbuvl.eval.repeats import repeated

_CHUNK_ELEMENTS = 1 << 21  # padded photo x box x box cells per chunk (~16 MB per float64 temporary)
_EXTRA, _MATCHED, _MISLOCATED = 0, 1, 2


@dataclass
class _Flat:
    """Boxes of every photo in one array: boxes `[M, 4]`, photo `[M]` (non-decreasing), start `[N + 1]`."""

    boxes: np.ndarray
    photo: np.ndarray
    start: np.ndarray

    @classmethod
    def of(cls, per_photo: Sequence[Sequence[Sequence[float]]]) -> "_Flat":
        counts = np.array([len(b) for b in per_photo], dtype=np.int64)
        flat = [box for boxes in per_photo for box in boxes]
        return cls(np.array(flat, dtype=np.float64).reshape(-1, 4), np.repeat(np.arange(len(per_photo)), counts),
                   np.r_[0, np.cumsum(counts)])

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.start)


def _codes(labels: Sequence[str], codes: dict[str, int]) -> np.ndarray:
    """One integer per distinct full label, shared through `codes` between ground truth and predictions."""
    return np.array([codes.setdefault(label, len(codes)) for label in labels], dtype=np.int64)


def _at_level(codes: dict[str, int], level: int | None) -> np.ndarray:
    """For each code, one integer per label cut to `level`: `_at_level(codes, level)[code]`."""
    cut: dict[str, int] = {}
    return np.array([cut.setdefault(_cut(label, level), len(cut)) for label in codes], dtype=np.int64)


def photo_chunks(size: np.ndarray) -> list[np.ndarray]:
    """Photo indices in chunks of similar `size` (boxes per photo), each small enough to pad as one array."""
    order = np.argsort(size, kind="stable")
    out, first = [], 0
    for i in range(len(order)):
        biggest = max(int(size[order[i]]), 1)
        if (i + 1 - first) * biggest * biggest > _CHUNK_ELEMENTS and i > first:
            out.append(order[first:i])
            first = i
    if first < len(order):
        out.append(order[first:])
    return out


def photo_pairs(photos: np.ndarray, pred_photo: np.ndarray, gt_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (prediction, ground truth) pair of the same photo among `photos`, as global indices `[K]` each:
    predictions by their photo `pred_photo` `[M]`, ground truth by each photo's first, `gt_start` `[N + 1]`."""
    wanted = np.zeros(len(gt_start) - 1, dtype=bool)
    wanted[photos] = True
    p = np.flatnonzero(wanted[pred_photo])
    n_gt = np.diff(gt_start)[pred_photo[p]]
    first = gt_start[pred_photo[p]]
    return np.repeat(p, n_gt), np.repeat(first - np.cumsum(n_gt) + n_gt, n_gt) + np.arange(int(n_gt.sum()))


@dataclass
class PhotoMatches:
    """What matching every photo gives: per photo its match, duplicates and F1 (matching.py's), and the totals."""

    matches: list[ImageMatch]
    duplicates: list[list[int]]
    f1: list[float]
    totals: MatchTotals


def match_photos(
    gt_boxes: Sequence[Sequence[Sequence[float]]],
    gt_labels: Sequence[Sequence[str]],
    pred_boxes: Sequence[Sequence[Sequence[float]]],
    pred_labels: Sequence[Sequence[str]],
    pred_scores: Sequence[Sequence[float]],
    iou_threshold: float = 0.5,
    level: int | None = None,
    mislocated_min_iou: float = MISLOCATED_MIN_IOU,
    duplicate_iou: float = DUPLICATE_IOU,
) -> PhotoMatches:
    """For every photo i: `match_image`, `duplicate_predictions` and `image_f1` of its boxes, and their `MatchTotals`.

    Arguments are per photo, as `match_image` takes them for one.
    """
    gt, pred = _Flat.of(gt_boxes), _Flat.of(pred_boxes)
    flat_gt_labels = [label for photo in gt_labels for label in photo]
    flat_pred_labels = [label for photo in pred_labels for label in photo]
    codes: dict[str, int] = {}
    gt_full, pred_full = _codes(flat_gt_labels, codes), _codes(flat_pred_labels, codes)
    level_of = _at_level(codes, level)
    gt_lid, pred_lid = level_of[gt_full], level_of[pred_full]
    scores = np.array([s for photo in pred_scores for s in photo], dtype=np.float64)
    # score order inside each photo, ties in index order (as matching.score_order)
    by_score = np.argsort(-scores, kind="stable")
    order = by_score[np.argsort(pred.photo[by_score], kind="stable")]  # [M]: photo by photo, best first
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - pred.start[pred.photo[order]]

    kind = np.full(len(order), _EXTRA, dtype=np.int64)
    partner = np.full(len(order), -1, dtype=np.int64)  # global index of the matched / mislocated ground truth
    partner_iou = np.zeros(len(order))
    for photos in photo_chunks(np.maximum(pred.counts, gt.counts)):
        _match_chunk(photos, gt, pred, gt_lid, pred_lid, rank, iou_threshold, mislocated_min_iou, kind, partner,
                     partner_iou)
    duplicate = _duplicates(pred, pred_full, rank, duplicate_iou)

    matched = np.flatnonzero(kind == _MATCHED)
    in_order = order[kind[order] == _MATCHED]  # photo by photo, best first: the order MatchTotals.add appends in
    right_at_level = np.bincount(pred.photo[matched[pred_lid[matched] == gt_lid[partner[matched]]]],
                                 minlength=len(gt_boxes))
    boxes = gt.counts + pred.counts
    f1 = np.where(boxes > 0, 2 * right_at_level / np.maximum(boxes, 1), 1.0).tolist()
    totals = MatchTotals(
        gt=len(gt.boxes), pred=len(pred.boxes), matched=len(matched), mislocated=int((kind == _MISLOCATED).sum()),
        mislabelled=int((pred_full[matched] != gt_full[partner[matched]]).sum()),
        missed=len(gt.boxes) - len(matched) - int((kind == _MISLOCATED).sum()), extra=int((kind == _EXTRA).sum()),
        duplicates=int(duplicate.sum()),
        pairs=list(zip([flat_pred_labels[p] for p in in_order], [flat_gt_labels[g] for g in partner[in_order]])),
    )
    matches, duplicates = _per_photo(gt, pred, order, kind, partner, partner_iou, duplicate)
    return PhotoMatches(matches, duplicates, f1, totals)


def _padded(flat: _Flat, photos: np.ndarray, column: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """`[k, width]` arrays of the boxes of `photos` at `column` (their index, or rank): global index (-1 = pad), then
    each of `values` (boxes `[k, width, 4]`)."""
    row_of = np.full(len(flat.start) - 1, -1, dtype=np.int64)
    row_of[photos] = np.arange(len(photos))
    width = max(int(flat.counts[photos].max()), 1)
    member = np.flatnonzero(row_of[flat.photo] >= 0)
    rows, cols = row_of[flat.photo[member]], column[member]
    index = np.full((len(photos), width), -1, dtype=np.int64)
    index[rows, cols] = member
    out = [index]
    for v in values:
        pad = np.zeros((len(photos), width) + v.shape[1:], dtype=v.dtype)
        pad[rows, cols] = v[member]
        out.append(pad)
    return tuple(out)


def _pair_ious(photos: np.ndarray, gt: _Flat, pred: _Flat, rank: np.ndarray, pm: int, gm: int) -> np.ndarray:
    """`[k, Pm, Gm]`: IoU of each prediction (by rank) with each ground-truth box of its photo, `box_iou`'s values;
    computed for real pairs only (pads stay 0 and are never free)."""
    row_of = np.full(len(pred.start) - 1, -1, dtype=np.int64)
    row_of[photos] = np.arange(len(photos))
    pair_p, pair_g = photo_pairs(photos, pred.photo, gt.start)
    out = np.zeros((len(photos), pm, gm))
    out[row_of[pred.photo[pair_p]], rank[pair_p], pair_g - gt.start[gt.photo[pair_g]]] = _iou(pred.boxes[pair_p], gt.boxes[pair_g])
    return out


def _match_chunk(
    photos: np.ndarray, gt: _Flat, pred: _Flat, gt_lid: np.ndarray, pred_lid: np.ndarray, rank: np.ndarray,
    iou_threshold: float, mislocated_min_iou: float, kind: np.ndarray, partner: np.ndarray, partner_iou: np.ndarray,
) -> None:
    """Match the photos of one chunk, writing into the flat result arrays."""
    gt_local = np.arange(len(gt.boxes)) - gt.start[gt.photo]
    g_index, g_boxes, g_lid = _padded(gt, photos, gt_local, gt.boxes, gt_lid)  # [k, Gm]
    p_index, p_lid = _padded(pred, photos, rank, pred_lid)  # [k, Pm] by rank
    if not len(pred.boxes):
        return
    free = g_index >= 0
    ious = _pair_ious(photos, gt, pred, rank, p_index.shape[1], g_index.shape[1])

    def take(r: int, rows: np.ndarray, allowed: np.ndarray, accept_lo: float, accept_hi: float, what: int) -> int:
        masked = np.where(allowed, ious[rows, r], -1.0)  # [m, Gm]
        j = masked.argmax(axis=1)
        best = masked[np.arange(len(rows)), j]
        ok = (best >= 0) & (best >= accept_lo) & (best < accept_hi)
        rows, j = rows[ok], j[ok]
        free[rows, j] = False
        p = p_index[rows, r]
        kind[p], partner[p], partner_iou[p] = what, g_index[rows, j], best[ok]
        return len(rows)

    def rounds(reaches: Callable[[slice], np.ndarray], start: int) -> Iterator[int]:
        """Rounds from `start` on in which some photo's prediction reaches a free ground-truth box (`reaches(rounds)`:
        `[k, rounds, Gm]`, where it may take one), best first. A prediction overlapping none enough takes nothing
        whatever is free, and none takes anything once those it overlaps are taken: their rounds are skipped (an
        answer of 100,000 boxes spent 8 s in them, a Python step per round), looked for again after 32 rounds in a
        row took nothing (100,000 boxes over one object: 23 s)."""
        step = max(1, _CHUNK_ELEMENTS // max(ious.shape[0] * ious.shape[2], 1))
        idle = 0
        while start < ious.shape[1]:
            block = slice(start, start + step)
            for r in start + np.flatnonzero((reaches(block) & free[:, None, :]).any(axis=(0, 2))):
                took = yield int(r)
                idle = 0 if took else idle + 1
                if idle >= 32:
                    idle, start = 0, int(r) + 1
                    break
            else:
                start = block.stop

    def walk(reaches: Callable[[slice], np.ndarray], step: Callable[[int], int]) -> None:
        """Greedy by score: every photo's r-th best, round after round, through `rounds`."""
        it = rounds(reaches, 0)
        try:
            r = next(it)
            while True:
                r = it.send(step(r))
        except StopIteration:
            pass

    def matched(r: int) -> int:
        rows = np.flatnonzero(p_index[:, r] >= 0)
        return take(r, rows, free[rows], iou_threshold, np.inf, _MATCHED)

    def mislocated(r: int) -> int:  # what is left, same label, lower overlap
        rows = np.flatnonzero((p_index[:, r] >= 0) & (kind[p_index[:, r]] == _EXTRA))
        allowed = free[rows] & (g_lid[rows] == p_lid[rows, r][:, None])
        return take(r, rows, allowed, mislocated_min_iou, iou_threshold, _MISLOCATED)

    walk(lambda s: ious[:, s] >= iou_threshold, matched)
    walk(lambda s: (ious[:, s] >= mislocated_min_iou) & (g_lid[:, None, :] == p_lid[:, s, None])
         & (p_index[:, s, None] >= 0) & (kind[p_index[:, s]] == _EXTRA)[:, :, None], mislocated)


def _duplicates(pred: _Flat, full: np.ndarray, rank: np.ndarray, iou: float) -> np.ndarray:
    """Per prediction: does it repeat a higher-ranked one of its photo (same full label, IoU above `iou`)?"""
    return repeated(pred.boxes, pred.photo * (int(full.max(initial=0)) + 1) + full, rank, iou)


def _per_photo(
    gt: _Flat, pred: _Flat, order: np.ndarray, kind: np.ndarray, partner: np.ndarray, partner_iou: np.ndarray,
    duplicate: np.ndarray,
) -> tuple[list[ImageMatch], list[list[int]]]:
    """The flat results as one ImageMatch and one duplicate list per photo, in matching.py's orders."""
    local = (order - pred.start[pred.photo[order]]).tolist()  # prediction index within its photo, best first
    kinds, dups, ious = kind[order].tolist(), duplicate[order].tolist(), partner_iou[order].tolist()
    partners = (partner[order] - gt.start[gt.photo[np.maximum(partner[order], 0)]]).tolist() if len(gt.boxes) else []
    taken = np.zeros(len(gt.boxes), dtype=bool)
    taken[partner[partner >= 0]] = True
    missed = np.flatnonzero(~taken)
    missed_local = (missed - gt.start[gt.photo[missed]]).tolist()
    missed_cut = np.searchsorted(gt.photo[missed], np.arange(len(gt.start))).tolist()
    starts = pred.start.tolist()
    matches, duplicates = [], []
    for i in range(len(starts) - 1):
        m = ImageMatch(missed=missed_local[missed_cut[i]:missed_cut[i + 1]])
        dup: list[int] = []
        for k in range(starts[i], starts[i + 1]):
            p = local[k]
            if kinds[k] == _MATCHED:
                m.matched.append((p, partners[k], ious[k]))
            elif kinds[k] == _MISLOCATED:
                m.mislocated.append((p, partners[k], ious[k]))
            else:
                m.extra.append(p)
            if dups[k]:
                dup.append(p)
        matches.append(m)
        duplicates.append(dup)
    return matches, duplicates
