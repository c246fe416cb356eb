"""Fault metrics: does the model find the parts that are wrong, and is each photo's verdict right?

Three views, each beside what "always pass" and "always fail" score on the same photos (docs/faults.md):
- objects: a ground-truth fault is found by a predicted box with the same label (the same kind and the same state,
  data/faults.py) at IoU >= 0.5, predictions matched greedily by score, each to the free fault it overlaps most.
  Recall and precision at the verdict's thresholds (each photo's: a photo predicted through tiles or zoom may have
  its own, infer/verdict.py), AP (COCO's 101-point interpolation) and the PR curve over all
  fault scores. "Always pass" flags nothing; "always fail" calls every true part of a judged kind faulty, in each
  of its kind's fault states, on its own box: recall 1 at the precision of the parts' fault rate.
- photos: a photo is faulty when its ground truth holds a fault; the verdict (infer/verdict.py) flags it when
  `review` or `fail`, fails it when `fail`. Precision, recall and accuracy of both, and ROC AUC of the photo's fault
  score (scikit-learn), undefined (None, with a note) when every photo is faulty or none is.
- states: per judged kind, the confusion of true state and predicted state over parts found as that kind (a box of
  the kind at IoU >= 0.5, whatever its state), with the parts of the kind no box found.
Faults are scored on full labels whatever `bbuvl eval --level` says: a state is the label's last part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from bbuvl.data.faults import Faults
from bbuvl.data.schema import ImageRecord
from bbuvl.eval.match_many import photo_chunks, photo_pairs
from bbuvl.eval.repeats import pair_iou as _iou
from bbuvl.infer.verdict import (FAIL, PASS, REVIEW, SCORE_DIGITS, VERDICTS, FramedThresholds, VerdictThresholds,
                                 verdict_of)

CURVE_POINTS = 101  # the PR curve in METRICS.json is thinned to at most this many operating points
PRECISION_LEVELS = (0.5, 0.6, 0.8)  # recall reported at these precisions (the bars docs/faults.md quotes)


@dataclass
class ObjectScores:
    """Fault recall, precision and AP of one predictor (the model, or a constant baseline)."""

    recall: float | None  # None without ground-truth faults
    precision: float | None  # None without predicted faults
    AP: float | None  # None without ground-truth faults
    found: int  # ground-truth faults found
    flagged: int  # predicted faults counted


@dataclass
class PRCurve:
    """Precision and recall of fault objects at each score threshold, highest threshold first."""

    threshold: list[float]
    precision: list[float]
    recall: list[float]

    def recall_at_precision(self, min_precision: float) -> float:
        """The highest recall among the operating points with precision >= `min_precision` (0.0 when none)."""
        return max((r for p, r in zip(self.precision, self.recall) if p >= min_precision), default=0.0)

    def thinned(self, n: int = CURVE_POINTS) -> "PRCurve":
        """At most `n` of the points, evenly spaced in rank, the first and last kept."""
        if len(self.threshold) <= n:
            return self
        keep = np.unique(np.linspace(0, len(self.threshold) - 1, n).round().astype(int))
        return PRCurve(*([xs[i] for i in keep] for xs in (self.threshold, self.precision, self.recall)))


@dataclass
class ObjectFaults:
    """Object-level fault metrics."""

    gt: int  # ground-truth fault objects
    predicted: int  # predicted fault objects (any score)
    iou: float
    at_fail: ObjectScores  # counting predicted faults scoring >= the fail threshold
    at_review: ObjectScores  # counting predicted faults scoring >= the review threshold
    always_pass: ObjectScores
    always_fail: ObjectScores
    curve: PRCurve

    def recall_at_precision(self, min_precision: float) -> float | None:
        """The best fault recall at precision >= `min_precision` over every score threshold (None without faults)."""
        return self.curve.recall_at_precision(min_precision) if self.gt else None


@dataclass
class BinaryScores:
    """Precision, recall and accuracy of a yes/no call per photo (yes = faulty)."""

    precision: float | None  # None when nothing is called faulty
    recall: float | None  # None without faulty photos
    accuracy: float


@dataclass
class PhotoScores:
    """One predictor's photo verdicts: `flagged` = review or fail, `failed` = fail; ROC AUC of its photo scores."""

    flagged: BinaryScores
    failed: BinaryScores
    roc_auc: float | None  # None when every photo is faulty or none is


@dataclass
class PhotoFaults:
    """Photo-level verdict metrics."""

    photos: int
    faulty: int  # photos whose ground truth holds a fault
    verdicts: dict[str, dict[str, int]]  # verdict -> {"faulty": n, "clean": n}
    model: PhotoScores
    always_pass: PhotoScores
    always_fail: PhotoScores


@dataclass
class StateConfusion:
    """For one judged kind: true state (rows) x predicted state (columns) of parts found as that kind."""

    kind: str
    states: list[str]
    faults: list[str]  # which of `states` are faults
    counts: list[list[int]]  # [true state][predicted state]
    missed: list[int]  # per true state: parts of this kind no box of the kind found
    accuracy: float | None  # right state among found parts (None when none was found)
    always_pass: float | None  # calling every found part not faulty
    always_fail: float | None  # calling every found part faulty


@dataclass
class FaultMetrics:
    """Everything `bbuvl eval` reports about faults: METRICS.json's "faults" key is `to_dict()`."""

    labels: list[str]  # the fault labels the hierarchy marks
    thresholds: VerdictThresholds  # what judged the photos predicted in one pass
    objects: ObjectFaults
    photos: PhotoFaults
    states: list[StateConfusion]
    photo_faulty: list[bool] = field(repr=False)  # per photo, whether its ground truth holds a fault
    photo_scores: list[float | None] = field(repr=False)  # per photo, its best fault score (None: no fault predicted)
    photo_verdicts: list[str] = field(repr=False)  # per photo, pass / review / fail
    photo_missed: list[int] = field(repr=False)  # per photo, ground-truth faults no predicted fault found at review or above
    judged_with: Faults = field(repr=False, compare=False)  # which labels are faults, to draw them
    notes: list[str] = field(default_factory=list)
    photos_tiled: int = 0  # photos predicted through tiles or zoom
    thresholds_tiled: VerdictThresholds | None = None  # what judged them (None: no such photo)
    # per photo, whether no usable answer came back (an error, an unreadable or cut answer): review at any threshold
    photo_unusable: list[bool] = field(default_factory=list, repr=False)
    # per photo, the thresholds that judged it (its framing's): what its pictures frame as a fault by
    photo_judged_by: list[VerdictThresholds] = field(default_factory=list, repr=False)
    # per photo, the best score of a box whose label may be a fault the hierarchy cannot read (None: no such box): it
    # sends the photo to review where a fault of that score would (infer/verdict.py `unjudged_at_review`)
    photo_unjudged: list[float | None] = field(default_factory=list, repr=False)

    def one_pair(self) -> VerdictThresholds | None:
        """The thresholds that judged every photo, when one pair did (None when each framing had its own)."""
        if self.thresholds_tiled is None or self.thresholds_tiled == self.thresholds:
            return self.thresholds
        return self.thresholds_tiled if self.photos_tiled == self.photos.photos else None

    def at_thresholds(self) -> tuple[str, str]:
        """The names of the object-level columns at the fail and review thresholds (`objects.at_fail`, `at_review`)."""
        t = self.one_pair()
        if t is None:
            return "score ≥ its photo's fail", "score ≥ its photo's review"
        return f"score ≥ fail {t.fail:g}", f"score ≥ review {t.review:g}"

    def judged(self) -> str:
        """The thresholds that judged the photos, in words: each framing's when photos of both were judged."""
        whole, tiled = self.photos.photos - self.photos_tiled, self.thresholds_tiled
        parts = [] if not whole else [f"review ≥ {self.thresholds.review:g}, fail ≥ {self.thresholds.fail:g}"]
        if tiled is not None:
            parts.append(("" if not whole else f"the {self.photos_tiled} predicted through tiles or zoom: ")
                         + f"review ≥ {tiled.review:g}, fail ≥ {tiled.fail:g}")
        return "; ".join(parts)

    def photos_to_check(self, n: int) -> list[int]:
        """Up to `n` photo indices an inspector should look at first: a missed fault (most first), then a clean
        photo failed, then a clean photo sent to review."""
        wrong = {FAIL: 1, REVIEW: 2}
        keys = [((0, -missed) if missed else (wrong[v], 0), i) for i, (missed, v, faulty)
                in enumerate(zip(self.photo_missed, self.photo_verdicts, self.photo_faulty))
                if missed or (not faulty and v != PASS)]
        return [i for _, i in sorted(keys)[:n]]

    def to_dict(self) -> dict[str, Any]:
        """The JSON under METRICS.json's "faults" (the curve thinned to `CURVE_POINTS`; no per-photo lists)."""
        objects = asdict(self.objects)
        objects["curve"] = asdict(self.objects.curve.thinned())
        objects["recall_at_precision"] = {f"{p:g}": self.objects.recall_at_precision(p) for p in PRECISION_LEVELS}
        return {"labels": self.labels, "thresholds": asdict(self.thresholds), "photos_tiled": self.photos_tiled,
                "thresholds_tiled": None if self.thresholds_tiled is None else asdict(self.thresholds_tiled),
                "objects": objects, "photos": asdict(self.photos), "states": [asdict(s) for s in self.states],
                "notes": self.notes}


def fault_metrics(records: Sequence[ImageRecord], predictions: Sequence[Sequence[dict[str, Any]]], faults: Faults,
                  thresholds: VerdictThresholds | FramedThresholds, failed: Sequence[bool] | None = None,
                  iou: float = 0.5, tiled: Sequence[bool] | None = None) -> FaultMetrics:
    """Every fault metric of `predictions[i]` (`{bbox_2d, label, score}` dicts) on `records[i]`; `failed[i]`: photo i
    has no usable answer (its verdict is review); `tiled[i]`: photo i was predicted through tiles or zoom, and is
    judged by `thresholds.tiled` when given."""
    failed = list(failed) if failed is not None else [False] * len(records)
    tiled = list(tiled) if tiled is not None else [False] * len(records)
    if not len(records) == len(predictions) == len(failed) == len(tiled):
        raise ValueError(f"{len(records)} photos, {len(predictions)} prediction lists, {len(failed)} failed flags and "
                         f"{len(tiled)} tiled flags")
    framed = thresholds if isinstance(thresholds, FramedThresholds) else FramedThresholds(thresholds)
    judging = [framed.of(t) for t in tiled]
    notes = [] if faults else ["the hierarchy marks no fault: every photo passes (mark states \"fault\": true, docs/faults.md)"]
    ids = _LabelIds(faults)
    n = len(records)
    # Labels first: only a judged part's box is read (a record's fields cost an attribute lookup each).
    gt = _Judged.of([[(o.bbox_2d, 1.0, d) for o in r.objects if ids(d := o.desc)[1] >= 0] for r in records], ids)
    # Each score as a line of `bbuvl predict` writes it (infer/verdict.py `judge`, `at_review`): a line of another
    # tool's scoring a fault 0.2999996 passed its photo at review 0.3 here, where predict's verdict, the report's
    # frame and the unjudgeable boxes' score below read 0.3.
    pred = _Judged.of([[(o["bbox_2d"], round(float(o["score"]), SCORE_DIGITS), o["label"]) for o in objs
                        if ids(o["label"])[1] >= 0] for objs in predictions], ids)
    fault_match, kind_match = _match(gt, pred, iou)

    is_fault = pred.fault >= 0
    found = np.zeros(len(pred.fault), dtype=bool)
    found[list(fault_match)] = True
    hits = [(score, hit, judging[k]) for score, hit, k in
            zip(pred.score[is_fault].tolist(), found[is_fault].tolist(), pred.photo[is_fault].tolist())]
    gt_faults = np.bincount(gt.photo[gt.fault >= 0], minlength=n)
    # Found for the inspector: matched at a score its photo's verdict reads (review or above). Matched at 0.00002, a
    # fault counted found, and a faulty photo that passed was "no fault missed" in the report
    review = np.array([t.review for t in judging], dtype=np.float64)
    flagged = found & (pred.score >= review[pred.photo]) if len(pred.fault) else found
    found_per_photo = np.bincount(pred.photo[flagged], minlength=n)
    best_score = np.full(n, -np.inf)
    np.maximum.at(best_score, pred.photo[is_fault], pred.score[is_fault])
    best = [None if b == -np.inf else float(b) for b in best_score]
    truth = (gt_faults > 0).tolist()
    # "Always fail": every true part of a judged kind called faulty in each fault state of its kind, on its own box.
    fault_states = np.array([len(faults.kinds[kind].faults) for kind in ids.kinds], dtype=np.int64)
    objects = _object_faults(hits, int(gt_faults.sum()), int(fault_states[gt.kind].sum()), iou)
    # Review at any threshold: no usable answer; at its score's: a box whose label may be a fault the hierarchy cannot read
    unjudged = _unjudged(predictions, faults)
    unread = [u is not None and u >= t.review for u, t in zip(unjudged, judging)]
    anyway = [bad or held for bad, held in zip(failed, unread)]
    verdicts = [verdict_of(score, bad, t) for score, bad, t in zip(best, anyway, judging)]
    photos, photo_notes = _photo_faults(truth, verdicts, [0.0 if b is None else b for b in best])
    if any(unread):
        photo_notes.append(f"{sum(unread)} photo{'s were' if sum(unread) > 1 else ' was'} sent to review for a box "
                           "whose label the hierarchy cannot judge and may be a fault, as `bbuvl predict` sends them")
    states = _state_confusions(faults, ids, gt, pred, kind_match)
    return FaultMetrics(sorted(faults.labels), framed.whole, objects, photos, states, truth, best, verdicts,
                        (gt_faults - found_per_photo).tolist(), faults, notes + photo_notes, sum(tiled),
                        framed.of(True) if any(tiled) else None, failed, judging, unjudged)


def _unjudged(predictions: Sequence[Sequence[dict[str, Any]]], faults: Faults) -> list[float | None]:
    """Each photo's best score, as a line writes it, of a box whose label the hierarchy cannot judge and may be a fault
    (None: no such box): at or above the review threshold its verdict is review at least, as the verdict of `bbuvl
    predict` is (infer/verdict.py `judge`)."""
    labels = {o["label"] for objects in predictions for o in objects}  # a few dozen, repeated over every photo
    unread = {label for label in labels if faults.unjudgeable(label)}
    if not unread:
        return [None] * len(predictions)
    return [max((round(float(o["score"]), SCORE_DIGITS) for o in objects if o["label"] in unread), default=None)
            for objects in predictions]


class _LabelIds:
    """Each distinct label's fault id (-1: not a fault), kind and state index (-1: not a judged kind), worked out once:
    a dataset repeats a few dozen labels hundreds of thousands of times."""

    def __init__(self, faults: Faults):
        self.faults = faults
        self.kinds = list(faults.kinds)
        self.fault_ids = {label: i for i, label in enumerate(sorted(faults.labels))}
        self._ids: dict[str, tuple[int, int, int]] = {}

    def __call__(self, label: str) -> tuple[int, int, int]:
        """`(fault id, kind index, state index)` of a label."""
        if label not in self._ids:
            canonical = self.faults.canonical(label)
            ks = self.faults.kind_state(label)
            kind = -1 if ks is None else self.kinds.index(ks[0])
            state = -1 if ks is None else self.faults.kinds[ks[0]].states.index(ks[1])
            self._ids[label] = (self.fault_ids.get(canonical, -1) if canonical else -1, kind, state)
        return self._ids[label]


@dataclass
class _Judged:
    """The boxes of judged kinds (fault labels are states of them) of every photo in one array, each photo's in
    descending score order: boxes `[M, 4]`, score, photo, fault id, kind, state `[M]`, each photo's first at `start`."""

    boxes: np.ndarray
    score: np.ndarray
    photo: np.ndarray
    fault: np.ndarray
    kind: np.ndarray
    state: np.ndarray
    start: np.ndarray

    @classmethod
    def of(cls, per_photo: Sequence[Sequence[tuple[Sequence[float], float, str]]], ids: _LabelIds) -> "_Judged":
        rows = [(box, score, k, *ids(label)) for k, items in enumerate(per_photo)
                for box, score, label in sorted(items, key=lambda item: -item[1]) if ids(label)[1] >= 0]
        counts = np.bincount(np.array([r[2] for r in rows], dtype=np.int64), minlength=len(per_photo))
        col = [np.array([r[i] for r in rows], dtype=np.float64 if i < 2 else np.int64) for i in range(1, 6)]
        return cls(np.array([r[0] for r in rows], dtype=np.float64).reshape(-1, 4), *col, np.r_[0, np.cumsum(counts)])


def _match(gt: _Judged, pred: _Judged, iou: float) -> tuple[dict[int, int], dict[int, int]]:
    """Predictions matched greedily in score order to the free ground-truth box they overlap most at IoU >= `iou`:
    faults to faults of the same label, any judged box to a part of its kind. `{prediction: ground truth}` each.

    The (prediction, ground truth) pairs of a photo have their IoU computed in one array (`_iou`, as eval/match_many.py
    does), photos in match_many's chunks so that crowded photos never hold every pair of the evaluation at once (20
    photos of 1,600 boxes: 3 GB); only the pairs that may match are kept for the greedy walk (few: a box overlaps few
    others at 0.5)."""
    chunks = photo_chunks(np.maximum(np.diff(pred.start), np.diff(gt.start)))
    if not chunks:
        return {}, {}
    p, g, overlap = (np.concatenate(c) for c in zip(*(_close_pairs(gt, pred, photos, iou) for photos in chunks)))
    same_fault = (pred.fault[p] >= 0) & (pred.fault[p] == gt.fault[g])
    same_kind = pred.kind[p] == gt.kind[g]
    return _greedy(p[same_fault], g[same_fault], overlap[same_fault]), _greedy(p[same_kind], g[same_kind], overlap[same_kind])


def _close_pairs(gt: _Judged, pred: _Judged, photos: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of `photos` overlapping at IoU >= `iou`: prediction, ground truth (global indices) and IoU, `[K]` each."""
    p, g = photo_pairs(photos, pred.photo, gt.start)
    overlap = _iou(pred.boxes[p], gt.boxes[g])
    close = overlap >= iou
    return p[close], g[close], overlap[close]


def _greedy(p: np.ndarray, g: np.ndarray, overlap: np.ndarray) -> dict[int, int]:
    """Candidate pairs walked by prediction (each photo's in score order), each one's best overlap first, ties to the
    earlier ground-truth box as `np.argmax` breaks them: `{prediction: ground truth}`."""
    taken: set[int] = set()
    out: dict[int, int] = {}
    order = np.lexsort((g, -overlap, p))
    for i, j in zip(p[order].tolist(), g[order].tolist()):
        if i not in out and j not in taken:
            out[i] = j
            taken.add(j)
    return out


def _object_faults(hits: list[tuple[float, bool, VerdictThresholds]], n_gt: int, calls: int, iou: float) -> ObjectFaults:
    """Object-level scores from every predicted fault's (score, found, its photo's thresholds); `calls`: what
    "always fail" predicts."""
    hits = sorted(hits, key=lambda h: -h[0])
    curve = _pr_curve([(s, tp) for s, tp, _ in hits], n_gt)

    def at(which: str) -> ObjectScores:
        kept = [tp for s, tp, t in hits if s >= getattr(t, which)]
        tp = sum(kept)
        return ObjectScores(tp / n_gt if n_gt else None, tp / len(kept) if kept else None, _ap(curve, n_gt), tp, len(kept))

    fail_precision = n_gt / calls if calls else None
    always_fail = ObjectScores(1.0 if n_gt else None, fail_precision, fail_precision if n_gt else None, n_gt, calls)
    always_pass = ObjectScores(0.0 if n_gt else None, None, 0.0 if n_gt else None, 0, 0)
    return ObjectFaults(n_gt, len(hits), iou, at("fail"), at("review"), always_pass, always_fail, curve)


def _pr_curve(hits: list[tuple[float, bool]], n_gt: int) -> PRCurve:
    """One operating point per distinct score (ties counted together), highest first."""
    out = PRCurve([], [], [])
    tp = 0
    for k, (score, hit) in enumerate(hits):
        tp += hit
        if k + 1 < len(hits) and hits[k + 1][0] == score:
            continue
        out.threshold.append(score)
        out.precision.append(tp / (k + 1))
        out.recall.append(tp / n_gt if n_gt else 0.0)
    return out


def _ap(curve: PRCurve, n_gt: int) -> float | None:
    """COCO's AP: precision made non-increasing in recall, read at 101 recall levels, averaged (None without faults)."""
    if not n_gt:
        return None
    if not curve.recall:
        return 0.0
    precision = np.maximum.accumulate(np.asarray(curve.precision)[::-1])[::-1]
    recall = np.asarray(curve.recall)
    levels = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, levels, side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


def binary_scores(truth: Sequence[bool], called: Sequence[bool]) -> BinaryScores:
    """Precision, recall and accuracy of `called` against `truth` (yes = faulty)."""
    t, c = np.asarray(truth, dtype=bool), np.asarray(called, dtype=bool)
    tp = int((t & c).sum())
    return BinaryScores(tp / int(c.sum()) if c.any() else None, tp / int(t.sum()) if t.any() else None,
                        float((t == c).mean()) if len(t) else 0.0)


def roc_auc(truth: Sequence[bool], scores: Sequence[float]) -> float | None:
    """ROC AUC of `scores` for `truth` (scikit-learn); None when only one class is present (it is undefined)."""
    if len(set(truth)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(truth, dtype=bool), np.asarray(scores, dtype=np.float64)))


def _photo_faults(truth: list[bool], verdicts: list[str], scores: list[float]) -> tuple[PhotoFaults, list[str]]:
    n = len(truth)
    counts = {v: {"faulty": sum(t for t, w in zip(truth, verdicts) if w == v),
                  "clean": sum(not t for t, w in zip(truth, verdicts) if w == v)} for v in VERDICTS}

    def scored(flagged: list[bool], failed: list[bool], photo_scores: list[float]) -> PhotoScores:
        return PhotoScores(binary_scores(truth, flagged), binary_scores(truth, failed), roc_auc(truth, photo_scores))

    model = scored([v != PASS for v in verdicts], [v == FAIL for v in verdicts], scores)
    always_pass = scored([False] * n, [False] * n, [0.0] * n)
    always_fail = scored([True] * n, [True] * n, [1.0] * n)
    notes = []
    if n and (all(truth) or not any(truth)):
        which = "every photo holds a fault" if all(truth) else "no photo holds a fault"
        notes.append(f"photo ROC AUC is undefined: {which} (it needs faulty and clean photos)")
    return PhotoFaults(n, sum(truth), counts, model, always_pass, always_fail), notes


def _state_confusions(faults: Faults, ids: _LabelIds, gt: _Judged, pred: _Judged,
                      kind_match: dict[int, int]) -> list[StateConfusion]:
    """Per judged kind, true state x predicted state of the parts a box of their kind found, and the parts none found."""
    out = []
    matched_gt = np.full(len(gt.kind), -1)
    matched_gt[list(kind_match.values())] = list(kind_match)
    for k, kind in enumerate(ids.kinds):
        fk = faults.kinds[kind]
        counts = np.zeros((len(fk.states), len(fk.states)), dtype=int)
        mine = gt.kind == k
        hit = mine & (matched_gt >= 0)
        np.add.at(counts, (gt.state[hit], pred.state[matched_gt[hit]]), 1)
        missed = np.bincount(gt.state[mine & (matched_gt < 0)], minlength=len(fk.states))
        found = int(counts.sum())
        faulty_rows = int(sum(counts[i].sum() for i, s in enumerate(fk.states) if s in fk.faults))
        out.append(StateConfusion(kind, list(fk.states), list(fk.faults), counts.tolist(), missed.tolist(),
                                  float(np.trace(counts)) / found if found else None,
                                  (found - faulty_rows) / found if found else None, faulty_rows / found if found else None))
    return out


class CannotChoose(ValueError):
    """The photos cannot decide a threshold (no faulty photo, no clean photo, no fault predicted); says why."""


def choose_thresholds(truth: Sequence[bool], scores: Sequence[float | None], target_recall: float,
                      target_precision: float, unusable: Sequence[bool] | None = None,
                      unjudged: Sequence[float | None] | None = None,
                      ) -> tuple[VerdictThresholds, float | None, float | None, list[str]]:
    """Verdict thresholds from photos' truth and best fault scores (None: no fault predicted): `review`, the highest
    that flags at least `target_recall` of the faulty photos; `fail`, the lowest at or above it at which at least
    `target_precision` of the failed photos are faulty; when none reaches it, the one at or above `review` with the
    fewest wrong verdicts, if that is fewer than failing no photo (else 1.0: every flagged photo goes to review).

    Returns the thresholds, the recall reached at `review`, the precision at `fail`, and notes on targets missed.
    A photo without a predicted fault always passes, so no threshold flags it; one with no usable answer
    (`unusable[i]`: an error, an unreadable or cut answer) goes to review at every threshold, and one with a box whose
    label the hierarchy cannot judge (`unjudged[i]`, its best score; None: none) at every review threshold at most
    that score, never to fail on it (infer/verdict.py `judge`). CannotChoose when the photos hold no fault, no clean
    photo, or no predicted fault.
    """
    if not 0.0 < target_recall <= 1.0 or not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target recall and precision must be in (0, 1], got {target_recall} and {target_precision}")
    t = np.asarray(truth, dtype=bool)
    s = np.asarray([-1.0 if v is None else v for v in scores], dtype=np.float64)  # -1: below every threshold
    # Flagged whatever review is: counted as missed, they pulled review down to reach the recall on the others
    anyway = np.asarray(unusable if unusable is not None else [False] * len(t), dtype=bool)
    # What review flags a photo at: its best fault's score or its unjudgeable box's, whichever is higher
    r = s if unjudged is None else np.maximum(s, [-1.0 if v is None else v for v in unjudged])
    if not t.any():
        raise CannotChoose("no photo of the validation set holds a fault: thresholds cannot be chosen for a recall")
    # Without a clean photo every threshold "reaches" precision 1, and without a predicted fault there is no score
    # to set one at: either way what would be written is a guess (fail at review, or 1.0) dressed as a choice.
    if t.all():
        raise CannotChoose(f"every one of the {len(t)} photos holds a fault: with no clean photo the precision of "
                           "failing them cannot be measured, so no fail threshold can be chosen; add clean photos")
    at, flags = _ScoreCounts.of(s, t, anyway), _ScoreCounts.of(r, t, anyway)
    if not len(at.score):
        raise CannotChoose(f"no fault was predicted in any of the {len(t)} photos ({int(t.sum())} faulty): there is "
                           "no fault score to set a threshold at")
    notes = []
    reached = np.flatnonzero(flags.recalled / t.sum() >= target_recall)
    review = float(flags.score[reached[0]]) if len(reached) else None  # the highest reaching it
    if review is None:
        review = float(flags.score[-1])
        reachable = float((t & ((r >= 0) | anyway)).sum() / t.sum())
        notes.append(f"no threshold flags {target_recall:.0%} of the faulty photos (a fault is predicted in, or no "
                     f"usable answer came back for, {reachable:.0%} of them): review is set at the lowest fault score, "
                     f"{review:g}")
    recall = float((t & ((r >= review) | anyway)).sum() / t.sum())
    fail, precision = 1.0, None
    above = at.score >= review
    precise = np.flatnonzero(above & (at.faulty / at.called >= target_precision))
    if len(precise):  # the lowest reaching it
        fail, precision = float(at.score[precise[-1]]), float(at.faulty[precise[-1]] / at.called[precise[-1]])
    else:
        # Out of reach: fail where the fewest photos get a wrong verdict, if that beats failing none; a threshold of
        # 1.0 would make the verdict "always pass" whatever the model sees (docs/faults.md, "Choosing thresholds").
        right = np.where(above, at.faulty + int((~t).sum()) - (at.called - at.faulty), -1)
        k = int(np.argmax(right))  # the most right, ties to the highest threshold
        best = float(at.score[k])
        # A photo scoring exactly 1 fails at every threshold (a score at least `fail`): failing none is out of reach.
        certain = bool((s >= 1.0).any())
        if right[k] > int((~t).sum()) or certain:
            fail, precision = best, float(t[s >= best].mean())
            notes.append(f"no threshold fails photos at precision {target_precision:.0%}: fail is set at {best:g}, "
                         f"where the fewest photos get a wrong verdict ({right[k]} of {len(t)} right, precision "
                         f"{precision:.0%})" + (f"; {int((s >= 1.0).sum())} photo(s) whose best fault scores 1 fail at "
                                                "any threshold" if certain else ""))
        else:
            notes.append(f"no threshold fails photos at precision {target_precision:.0%}: fail is set at 1.0, so every "
                         "flagged photo goes to review")
    return VerdictThresholds(review, fail), recall, precision, notes


@dataclass
class _ScoreCounts:
    """At each distinct fault score >= 0, highest first (`score` `[C]`): the photos scoring at least it (`called`),
    the faulty ones among them (`faulty`), and the faulty photos it flags, counting those always flagged (`recalled`).

    One sort and cumulative sums, where each score was tried over every photo: 16,000 photos took 1.3 s."""

    score: np.ndarray
    called: np.ndarray
    faulty: np.ndarray
    recalled: np.ndarray

    @classmethod
    def of(cls, s: np.ndarray, t: np.ndarray, anyway: np.ndarray) -> "_ScoreCounts":
        order = np.argsort(-s, kind="stable")
        ranked = s[order][: int((s >= 0).sum())]
        last = np.r_[ranked[1:] != ranked[:-1], True][: len(ranked)]  # each distinct score's last photo
        faulty = np.cumsum(t[order][: len(ranked)])[last]
        flagged = np.cumsum((t & ~anyway)[order][: len(ranked)])[last] + int((t & anyway).sum())
        return cls(ranked[last], np.flatnonzero(last) + 1, faulty, flagged)
