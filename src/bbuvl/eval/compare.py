"""Side by side: this evaluation's headline numbers against a baseline's METRICS.json (e.g. the base model, zero-shot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bbuvl.data.jsonfile import read_json

# (row name, path into METRICS.json, higher is better)
HEADLINE: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("AP", ("AP",), True),
    ("AP50", ("AP50",), True),
    ("AP75", ("AP75",), True),
    ("AP50 (class-agnostic)", ("AP50_agnostic",), True),
    ("label accuracy, full label", ("label_accuracy", "full"), True),
    ("label accuracy, level 1", ("label_accuracy", "level_1"), True),
    ("matched objects", ("errors", "matched"), True),
    ("missed objects", ("errors", "missed"), False),
    ("extra objects", ("errors", "extra"), False),
    ("parse failure rate", ("parse_failure_rate",), False),
    ("fault recall (score >= fail)", ("faults", "objects", "at_fail", "recall"), True),
    ("fault precision (score >= fail)", ("faults", "objects", "at_fail", "precision"), True),
    ("fault AP", ("faults", "objects", "at_fail", "AP"), True),
    ("photo verdict accuracy (fail)", ("faults", "photos", "model", "failed", "accuracy"), True),
    ("photo fault score ROC AUC", ("faults", "photos", "model", "roc_auc"), True),
)


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A METRICS.json written by `bbuvl eval`; a clear error for any other file."""
    data = read_json(path, "metrics file")
    if not isinstance(data, dict) or "AP50" not in data or "label_accuracy" not in data:
        raise ValueError(f"{path}: not a METRICS.json written by `bbuvl eval` (no AP50 / label_accuracy)")
    return data


def _get(metrics: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    value: Any = metrics
    for k in keys:
        value = value.get(k) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def compare(metrics: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per headline number: `name`, `baseline`, `value`, `delta` (None where either side has none), `better`."""
    rows = []
    for name, keys, higher in HEADLINE:
        base, value = _get(baseline, keys), _get(metrics, keys)
        delta = None if base is None or value is None else value - base
        better = None if delta is None or delta == 0 else (delta > 0) == higher
        rows.append({"name": name, "baseline": base, "value": value, "delta": delta, "better": better})
    return rows
