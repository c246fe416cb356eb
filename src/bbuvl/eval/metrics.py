"""Every number `bbuvl eval` reports, from ground-truth records and prediction lines.

METRICS.json has exactly the keys in METRIC_KEYS, then `settings` (eval/compare.py). Everything else COCO computes (AP per object size,
AR, the class-agnostic breakdown, the precision-recall curves) goes into the `details` file beside it
(`METRICS.coco.json`), so the headline file stays small and stable for scripts that compare runs.

COCO AP ranks every prediction whatever its score; the error counts, label accuracy and duplicate
rate describe what a user would see at `min_score` (0 keeps every prediction). The fault metrics
(`faults`, eval/faults.py) score every prediction and the verdict at its thresholds. Every number is the same for
the same photos and boxes whatever order the files list them in: ties are ranked in one order (eval/order.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bbuvl.data.faults import Faults
from bbuvl.data.labels import label_at_level
from bbuvl.data.schema import ImageRecord
from bbuvl.data.text import show_text
from bbuvl.eval.coco_metrics import CocoResult, coco_evaluate
from bbuvl.eval.collector import collector_paused
from bbuvl.eval.faults import FaultMetrics, fault_metrics
from bbuvl.eval.match_many import match_photos
from bbuvl.eval.matching import ImageMatch, MatchTotals, label_accuracy, label_levels
from bbuvl.eval.order import sorted_gt, sorted_predictions
from bbuvl.eval.predictions import PredictionLine, align_predictions, beyond_frame_note
from bbuvl.eval.prior import best_constant_box
from bbuvl.eval.spelling import one_spelling
from bbuvl.infer.verdict import FramedThresholds, VerdictThresholds, default_thresholds
from bbuvl.paths import real_path

METRIC_KEYS = (
    "AP", "AP50", "AP75", "AP_agnostic", "AP50_agnostic", "per_category", "label_accuracy", "parse_failure_rate",
    "duplicate_rate", "errors", "prior", "faults",
)


@dataclass
class ImageResult:
    """One photo: its ground truth, the predictions kept for matching, and how they matched."""

    record: ImageRecord
    image_path: Path
    prediction: PredictionLine | None
    objects: list[dict[str, Any]]  # predictions with score >= min_score
    match: ImageMatch
    duplicates: list[int]
    f1: float
    failed: bool  # error line or unreadable answer

    @property
    def mislabelled(self) -> int:
        """Matched boxes whose full label is wrong."""
        return sum(self.objects[p]["label"] != self.record.objects[g].desc for p, g, _ in self.match.matched)

    @property
    def error_count(self) -> int:
        """Missed + extra + mislocated + mislabelled objects, plus one for a failed answer."""
        m = self.match
        return len(m.missed) + len(m.extra) + len(m.mislocated) + self.mislabelled + int(self.failed)


@dataclass
class Evaluation:
    """The result of one evaluation: headline metrics, COCO details, and per-photo results for the report."""

    metrics: dict[str, Any]
    coco: CocoResult
    images: list[ImageResult]
    settings: dict[str, Any]
    faults: FaultMetrics
    notes: list[str] = field(default_factory=list)

    def details(self) -> dict[str, Any]:
        """The contents of METRICS.coco.json: settings, full COCO summaries and precision-recall curves."""
        return {
            "settings": self.settings,
            "coco": self.coco.summary,
            "coco_agnostic": self.coco.agnostic,
            "pr_curves": self.coco.curves,
            "notes": self.notes,
        }

    def score_faults(self, faults: Faults, thresholds: VerdictThresholds | FramedThresholds) -> FaultMetrics:
        """The fault metrics again, with other faults or verdict thresholds (`faults` and METRICS.json's replaced)."""
        found = _score_faults(self.images, faults, thresholds)
        self.notes = [n for n in self.notes if n not in self.faults.notes] + found.notes
        self.faults, self.metrics["faults"] = found, found.to_dict()
        return found

    def worst(self, n: int) -> list[ImageResult]:
        """The `n` photos to look at first: lowest F1, then most errors."""
        ranked = sorted(self.images, key=lambda r: (r.f1, -r.error_count))
        return [r for r in ranked[:n] if r.f1 < 1.0 or r.error_count]


# The prior depends on the ground truth alone, and one process may score many prediction files against the same
# photos (`choose-tiles` a file for each candidate scale): its search, ~0.3 s for a few photos on a 2-core machine,
# is made once for them. Keyed by a digest of what it reads, so that a large dataset is not held twice.
_PRIORS: dict[bytes, tuple[tuple[float, ...], float | None, float] | None] = {}
_PRIORS_HELD = 32


def _prior(records: list[ImageRecord], level: int | None) -> dict[str, Any] | None:
    """What the best constant box scores on these photos, its labels cut at `level` as the AP beside it: the bar any
    AP has to clear to mean something."""
    read = (level, [(r.image, r.width, r.height, [(o.desc, *o.bbox_2d) for o in r.objects]) for r in records])
    key = hashlib.sha256(repr(read).encode("utf-8")).digest()
    if key not in _PRIORS:
        if len(_PRIORS) >= _PRIORS_HELD:
            del _PRIORS[next(iter(_PRIORS))]
        _PRIORS[key] = _search_prior(records, level)
    found = _PRIORS[key]
    return None if found is None else {"box": list(found[0]), "AP50": found[1], "AP50_agnostic": found[2]}


def _search_prior(records: list[ImageRecord], level: int | None) -> tuple[tuple[float, ...], float | None, float] | None:
    """`_prior`'s box, AP50 and class-agnostic AP50, searched afresh."""
    if not any(r.objects for r in records):
        return None
    if level:
        records = [r.model_copy(update={"objects": [o.model_copy(update={"desc": label_at_level(o.desc, level)})
                                                    for o in r.objects]}) for r in records]
    prior = best_constant_box(records)
    return prior.box, prior.ap50, prior.ap50_agnostic


def _boxes_in_one_order(records: list[ImageRecord], lines: list[PredictionLine]) -> tuple[list[ImageRecord], list[PredictionLine]]:
    """Each photo's ground-truth and predicted boxes in eval/order.py's order: a greedy match gives a box to the first
    of two equal predictions, and its ties fell by the order a file listed them in. Only what moves is copied."""
    records = [sorted_gt(r) for r in records]
    out = []
    for line in lines:
        objects = sorted_predictions(line.objects)
        out.append(line if all(a is b for a, b in zip(objects, line.objects)) else replace(line, objects=objects))
    return records, out


def evaluate_predictions(
    records: list[ImageRecord],
    gt_path: str | Path,
    lines: list[PredictionLine],
    pred_path: str | Path | None = None,
    level: int | None = None,
    iou: float = 0.5,
    min_score: float = 0.0,
    faults: Faults | None = None,
    thresholds: VerdictThresholds | FramedThresholds | None = None,
) -> Evaluation:
    """Pair predictions with ground truth and compute every metric (see METRIC_KEYS and `Evaluation.details`).

    Raises ValueError when there is nothing to score: no ground-truth photos, no prediction lines, or no line
    that names a ground-truth photo (AP 0 would then describe the inputs, not the model).
    `faults` (default: the shipped hierarchy's) and the verdict's `thresholds` (default: the config's) drive the
    fault metrics (eval/faults.py).
    """
    if thresholds is None:
        thresholds = default_thresholds()
    with collector_paused():
        return _evaluate(records, gt_path, lines, pred_path, level, iou, min_score,
                         Faults.load() if faults is None else faults, thresholds)  # Faults marking none are falsy


def _evaluate(records: list[ImageRecord], gt_path: str | Path, lines: list[PredictionLine], pred_path: str | Path | None,
              level: int | None, iou: float, min_score: float, faults: Faults,
              thresholds: VerdictThresholds | FramedThresholds) -> Evaluation:
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"--iou must be in (0, 1], got {iou}")
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"--min-score must be in [0, 1], got {min_score}")
    _check_something_to_score(records, gt_path, lines, pred_path)
    depth = label_levels([o.desc for r in records for o in r.objects])
    if level is not None and not 1 <= level <= depth:
        # Deeper than every label, level N is the full label: the report would say "level 99" and mean "full".
        raise ValueError(f"--level {level}: the labels of {gt_path} have {depth} level{'s' if depth > 1 else ''} "
                         f"(category/attribute/...); give 1 to {depth}, or leave --level out for the full label")
    records, lines = one_spelling(records, lines, faults)
    records, lines = _boxes_in_one_order(records, lines)
    alignment = align_predictions(records, gt_path, lines, pred_path)
    per_image = [p.objects if p is not None else [] for p in alignment.predictions]
    coco = coco_evaluate(records, per_image, level)

    gt_dir = real_path(gt_path).parent  # as resolve_image does, once rather than per photo
    images, totals = _image_results(records, gt_dir, alignment.predictions, level, iou, min_score)
    levels = label_levels([o.desc for r in records for o in r.objects])

    present = [p for p in alignment.predictions if p is not None]
    failures = sum(p.failed for p in present)
    errors = {
        **totals.errors(),
        "images": len(records),
        "images_without_prediction": sum(p is None for p in alignment.predictions),
        "prediction_errors": sum(bool(p.error) for p in present),
        "parse_failures": failures,
        "cut_answers": sum(p.cut for p in present),  # closed by the token budget, not by the model
    }
    metrics = {
        "AP": coco.summary["AP"],
        "AP50": coco.summary["AP50"],
        "AP75": coco.summary["AP75"],
        "AP_agnostic": coco.agnostic["AP"],
        "AP50_agnostic": coco.agnostic["AP50"],
        "per_category": coco.per_category,
        "label_accuracy": label_accuracy(totals.pairs, levels),
        "parse_failure_rate": failures / len(present) if present else None,
        "duplicate_rate": totals.duplicate_rate(),
        "errors": errors,
        "prior": _prior(records, level),
    }
    found = _score_faults(images, faults, thresholds)
    metrics["faults"] = found.to_dict()
    settings = {
        "gt": str(gt_path), "pred": str(pred_path) if pred_path else None, "level": level, "iou": iou,
        "min_score": min_score,
    }
    notes = (alignment.notes() + beyond_frame_note(records, alignment, pred_path)
             + unknown_labels_notes(records, alignment.predictions, faults, gt_path, pred_path) + found.notes)
    return Evaluation(metrics, coco, images, settings, found, notes)


def unknown_labels_notes(records: list[ImageRecord], lines: list[PredictionLine | None], faults: Faults,
                         gt_path: str | Path, pred_path: str | Path | None) -> list[str]:
    """A note for the ground truth's and for the paired predictions' labels that the hierarchy judging them does not
    know, the most frequent first: each is scored as a category of its own and never as a fault, which nothing else
    would say."""
    sides = (("ground-truth objects in", gt_path, [o.desc for r in records for o in r.objects]),
             ("predicted boxes in", pred_path or "the predictions",
              [o["label"] for line in lines if line is not None for o in line.objects]))
    notes = []
    for what, path, labels in sides:
        unknown: dict[str, int] = {}
        for label in labels:
            if faults.canonical(label) is None:
                unknown[label] = unknown.get(label, 0) + 1
        if not unknown:
            continue
        # The most frequent first, equal counts by label: the same note whatever order the files list them in
        ranked = sorted(unknown.items(), key=lambda item: (-item[1], item[0]))
        first = ranked[0][0]
        shown = ", ".join(f"{show_text(label)} ({n})" for label, n in ranked[:3])
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        notes.append(f"{sum(unknown.values())} {what} {path} have labels the hierarchy {faults.hierarchy.source} does "
                     f"not know: {shown}{more}; the first: {faults.hierarchy.problem(first)}. They are scored as "
                     "categories of their own and never as faults: give the hierarchy they were labelled with "
                     "(--hierarchy), or correct the labels")
    return notes


def _score_faults(images: list[ImageResult], faults: Faults, thresholds: VerdictThresholds | FramedThresholds) -> FaultMetrics:
    """Fault metrics over every prediction (whatever --min-score) at IoU 0.5 (whatever --iou): a found fault means
    one thing across runs (docs/faults.md). A photo without a usable answer, or whose answer the token budget cut,
    is sent to review, and one predicted through tiles or zoom is judged by the tiled photos' thresholds, as `bbuvl
    predict` judges it (infer/verdict.py)."""
    return fault_metrics([r.record for r in images], [r.prediction.objects if r.prediction else [] for r in images],
                         faults, thresholds, [r.prediction is None or r.failed or r.prediction.cut for r in images],
                         tiled=[r.prediction is not None and r.prediction.tiled for r in images])


def _check_something_to_score(records: list[ImageRecord], gt_path: str | Path, lines: list[PredictionLine],
                              pred_path: str | Path | None) -> None:
    """Refuse an evaluation with nothing to score: its metrics would be zeros that look like a result.

    Lines that share no photo with the ground truth are refused where they are paired (`align_predictions`).
    """
    pred = str(pred_path) if pred_path is not None else "the predictions"
    if not records:
        raise ValueError(f"{gt_path}: the ground truth has no photos, so there is nothing to score against")
    if not lines:
        raise ValueError(f"{pred}: no prediction lines (the file is empty); run `bbuvl predict` on the photos of {gt_path}")


def _image_results(
    records: list[ImageRecord], gt_dir: Path, lines: list[PredictionLine | None], level: int | None, iou: float,
    min_score: float,
) -> tuple[list[ImageResult], MatchTotals]:
    """Every photo matched (all at once, eval/match_many.py), and the counts summed over them."""
    kept = [[o for o in line.objects if o["score"] >= min_score] if line else [] for line in lines]
    gt_labels = [[o.desc for o in r.objects] for r in records]
    labels = [[o["label"] for o in objects] for objects in kept]
    result = match_photos(
        [[o.bbox_2d for o in r.objects] for r in records], gt_labels,
        [[o["bbox_2d"] for o in objects] for objects in kept], labels,
        [[o["score"] for o in objects] for objects in kept], iou_threshold=iou, level=level)
    images = [
        ImageResult(record=record, image_path=gt_dir / record.image, prediction=line, objects=objects, match=match,
                    duplicates=dups, f1=f1, failed=bool(line is not None and line.failed))
        for record, line, objects, match, dups, f1 in zip(records, lines, kept, result.matches, result.duplicates, result.f1)
    ]
    return images, result.totals
