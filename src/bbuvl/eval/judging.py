"""What `bbuvl eval` judges photos with: the faults and verdict thresholds of the checkpoint that wrote the
predictions (or the ones given), and choosing new thresholds on validation photos (docs/faults.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bbuvl.data.faults import Faults
from bbuvl.eval.faults import choose_thresholds
from bbuvl.eval.metrics import Evaluation
from bbuvl.infer.output import read_manifest
from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds, checkpoint_verdict, default_thresholds


@dataclass
class VerdictSetup:
    """The faults and thresholds an evaluation judges with, where the thresholds came from, and the checkpoint."""

    faults: Faults
    thresholds: VerdictThresholds
    source: str  # where the thresholds came from, in words
    checkpoint: str | None  # the checkpoint that wrote the predictions, when it is at hand


def verdict_setup(pred: str | Path, hierarchy: str | Path | None = None, review: float | None = None,
                  fail: float | None = None, need_checkpoint: bool = False) -> VerdictSetup:
    """Faults from `hierarchy`, else the predicting checkpoint's run config, else the shipped file; thresholds from
    `review` / `fail`, else that checkpoint's (thresholds file, then run config), else the config defaults.

    `need_checkpoint`: the checkpoint must be at hand (thresholds are to be written into it); ValueError if not.
    """
    manifest = read_manifest(Path(pred))
    checkpoint = manifest.checkpoint if manifest is not None and Path(manifest.checkpoint).is_dir() else None
    if need_checkpoint and checkpoint is None:
        why = "it names none (not written by `bbuvl predict`)" if manifest is None else f"{manifest.checkpoint} is not there"
        raise ValueError(f"{pred}: --choose-thresholds writes into the checkpoint that made these predictions, but {why}")
    own, own_hierarchy, source = (default_thresholds(), None,
                                  "the config's defaults (inference.verdict_review, inference.verdict_fail)")
    if checkpoint is not None:
        own, own_hierarchy, source = checkpoint_verdict(checkpoint)
    if review is not None or fail is not None:
        source = "the command line" if review is not None and fail is not None else f"the command line and {source}"
    thresholds = VerdictThresholds(own.review if review is None else review, own.fail if fail is None else fail)
    return VerdictSetup(Faults.load(hierarchy or own_hierarchy), thresholds, source, checkpoint)


def choose_verdict(evaluation: Evaluation, setup: VerdictSetup, gt: str | Path, target_recall: float,
                   target_precision: float) -> ChosenThresholds:
    """Thresholds chosen on the evaluation's photos (`choose_thresholds`); the evaluation's fault metrics and `setup`
    are rescored at them. Nothing is written: `ChosenThresholds.save` does that."""
    f = evaluation.faults
    thresholds, recall, precision, notes = choose_thresholds(f.photo_faulty, f.photo_scores, target_recall, target_precision)
    evaluation.score_faults(setup.faults, thresholds)
    evaluation.notes.extend(notes)
    setup.thresholds, setup.source = thresholds, f"chosen on {gt} (--choose-thresholds)"
    return ChosenThresholds(thresholds, target_recall, target_precision, recall, precision, len(f.photo_faulty),
                            sum(f.photo_faulty), sorted(setup.faults.labels), str(gt), notes)
