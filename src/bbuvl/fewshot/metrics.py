"""Few-shot metrics over string labels, Unknown included as a label of its own; computed by scikit-learn.

Only fall-out is ours: the fraction of queries whose truth is Unknown (their class has no support) that
were accepted as some class, i.e. the false-positive rate of the rejection rule.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

from bbuvl.fewshot.support import UNKNOWN

METRIC_NAMES = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1", "mcc", "fallout")


def fallout(truth: Sequence[str], pred: Sequence[str]) -> float | None:
    """Unknown-truth queries predicted as a class / Unknown-truth queries (None when there are none)."""
    unknown = [p for t, p in zip(truth, pred) if t == UNKNOWN]
    if not unknown:
        return None
    return sum(p != UNKNOWN for p in unknown) / len(unknown)


def classification_metrics(truth: Sequence[str], pred: Sequence[str]) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, macro precision/recall/F1, MCC (scikit-learn, defaults) and fall-out.

    Macro averages run over every label seen in truth or predictions (scikit-learn's default), with 0 for
    a label never predicted (or never true) instead of a warning.
    """
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} true labels but {len(pred)} predictions")
    if not truth:
        return {name: None for name in METRIC_NAMES}
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true" and 0/0 cases: expected with rejection, not news
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        p, r, f, _ = precision_recall_fscore_support(truth, pred, average="macro", zero_division=0)
        return {
            "accuracy": float(accuracy_score(truth, pred)),
            "balanced_accuracy": float(balanced_accuracy_score(truth, pred)),
            "macro_precision": float(p),
            "macro_recall": float(r),
            "macro_f1": float(f),
            "mcc": float(matthews_corrcoef(truth, pred)),
            "fallout": fallout(truth, pred),
        }


def confusion(truth: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """`[L, L]` counts, rows = truth, columns = prediction, in the order of `labels` (Unknown among them)."""
    return confusion_matrix(truth, pred, labels=list(labels))


def per_class(truth: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> list[dict[str, float | int | str]]:
    """Per label: true count, predicted count, TP/FP/FN, precision, recall, F1 (scikit-learn, 0 for 0/0)."""
    labels = list(labels)
    cm = confusion(truth, pred, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        p, r, f, _ = precision_recall_fscore_support(truth, pred, labels=labels, average=None, zero_division=0)
    rows = []
    for i, label in enumerate(labels):
        tp = int(cm[i, i])
        rows.append({
            "class": label, "true": int(cm[i].sum()), "predicted": int(cm[:, i].sum()), "tp": tp,
            "fp": int(cm[:, i].sum()) - tp, "fn": int(cm[i].sum()) - tp,
            "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
        })
    return rows
