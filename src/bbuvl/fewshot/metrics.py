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


def encode(truth: Sequence[str], pred: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Both label lists as integer codes into their sorted union (what scikit-learn sorts strings into anyway).

    scikit-learn validates string labels element by element; on codes the same metrics run ~10x faster.
    """
    names = sorted(set(truth) | set(pred))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[t] for t in truth]), np.array([index[p] for p in pred]), names


def classification_metrics(truth: Sequence[str], pred: Sequence[str]) -> dict[str, float | None]:
    """Accuracy, balanced accuracy, macro precision/recall/F1, MCC (scikit-learn, defaults) and fall-out.

    Macro averages run over every label seen in truth or predictions (scikit-learn's default), with 0 for
    a label never predicted (or never true) instead of a warning.
    """
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} true labels but {len(pred)} predictions")
    if not len(truth):
        return {name: None for name in METRIC_NAMES}
    y_true, y_pred, _ = encode(truth, pred)
    with warnings.catch_warnings():
        # "y_pred contains classes not in y_true" and 0/0 cases: expected with rejection, not news
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
        return {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_precision": float(p),
            "macro_recall": float(r),
            "macro_f1": float(f),
            "mcc": float(matthews_corrcoef(y_true, y_pred)),
            "fallout": fallout(truth, pred),
        }


def _codes(truth: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Labels as their index in `labels`; a label outside it raises (it would vanish from the matrix)."""
    index = {name: i for i, name in enumerate(labels)}
    missing = sorted((set(truth) | set(pred)) - set(index))
    if missing:
        raise ValueError(f"labels not in the list of classes: {missing[:5]}")
    return np.array([index[t] for t in truth], dtype=int), np.array([index[p] for p in pred], dtype=int)


def confusion(truth: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """`[L, L]` counts, rows = truth, columns = prediction, in the order of `labels` (Unknown among them)."""
    y_true, y_pred = _codes(truth, pred, labels)
    return confusion_matrix(y_true, y_pred, labels=np.arange(len(labels)))


def per_class(truth: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> list[dict[str, float | int | str]]:
    """Per label: true count, predicted count, TP/FP/FN, precision, recall, F1 (scikit-learn, 0 for 0/0)."""
    labels = list(labels)
    y_true, y_pred = _codes(truth, pred, labels)
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(len(labels)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=np.arange(len(labels)), average=None,
                                                     zero_division=0)
    rows = []
    for i, label in enumerate(labels):
        tp = int(cm[i, i])
        rows.append({
            "class": label, "true": int(cm[i].sum()), "predicted": int(cm[:, i].sum()), "tp": tp,
            "fp": int(cm[:, i].sum()) - tp, "fn": int(cm[i].sum()) - tp,
            "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
        })
    return rows
