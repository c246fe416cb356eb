"""Side by side: this evaluation's headline numbers against a baseline's METRICS.json (e.g. the base model, zero-shot).

Two evaluations compare only when they measured the same thing: the same categories (--level), the same matching
(--iou, --min-score), the same ground truth (by content, wherever it lies) and the same hierarchy (which labels exist
and which are faults). METRICS.json records these under "settings"; a baseline that differs is refused, naming both
values, and one written before the settings were recorded is compared with a warning that they are unknown. Other
ground truth (another file, or the same file changed since) is compared only when the user says so (--baseline-other-gt).

What a comparison is for, the model, is recorded in "settings" under "predictions", as their manifest says it: the
checkpoint, its identity by content (model/identity.py), the mode and the tiles. A model, mode or tiles of the baseline
other than this evaluation's is named in one line each, never refused (docs/eval.md).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from bbuvl.data.digests import file_digest
from bbuvl.data.jsonfile import is_json_number, read_json
from bbuvl.data.labels import Hierarchy
from bbuvl.eval.predictions import predictions_manifest
from bbuvl.paths import real_path
from bbuvl.versions import software, software_differences

# What computes the numbers besides bbu-vl (versions.py names the libraries that compute the answers).
SCORING = ("faster-coco-eval", "scikit-learn", "scipy")

SETTINGS_KEY = "settings"
PREDICTIONS_KEY = "predictions"
# How a line about the baseline starts among an evaluation's notes.
AGAINST = "against the baseline: "

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
    try:
        data = read_json(path, "metrics file")
    except ValueError as e:  # a predictions JSONL given as --baseline said only "line 2: not valid JSON"
        raise ValueError(f"{e}; --baseline takes a METRICS.json written by `bbuvl eval`") from None
    if not isinstance(data, dict) or "AP50" not in data or "label_accuracy" not in data:
        raise ValueError(f"{path}: not a METRICS.json written by `bbuvl eval` (no AP50 / label_accuracy)")
    for _, keys, _ in HEADLINE:
        # eval writes a finite number or null: NaN was compared as "+nan" (worse), `true` as an AP of 1.0
        value = _lookup(data, keys)
        if value is not None and not (is_json_number(value) and math.isfinite(value)):
            raise ValueError(f"{path}: {'.'.join(keys)} is {value!r}, not a number: not a METRICS.json written by "
                             "`bbuvl eval`")
    return data


def _lookup(metrics: dict[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = metrics
    for k in keys:
        value = value.get(k) if isinstance(value, dict) else None
    return value


def _get(metrics: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    value = _lookup(metrics, keys)
    return float(value) if is_json_number(value) else None


def compare(metrics: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per headline number: `name`, `baseline`, `value`, `delta` (None where either side has none), `better`."""
    rows = []
    for name, keys, higher in HEADLINE:
        base, value = _get(baseline, keys), _get(metrics, keys)
        delta = None if base is None or value is None else value - base
        better = None if delta is None or delta == 0 else (delta > 0) == higher
        rows.append({"name": name, "baseline": base, "value": value, "delta": delta, "better": better})
    return rows


def run_settings(gt: Path, hierarchy: Hierarchy, level: int | None, iou: float, min_score: float) -> dict[str, Any]:
    """What an evaluation's numbers depend on, as METRICS.json records it under "settings"."""
    # The hierarchy by what it decides (its labels and faults), not by its file: the shipped one and a copy agree.
    decides = json.dumps({"labels": hierarchy.labels(), "faults": sorted(hierarchy.faults)}, ensure_ascii=False)
    # The real path: the same file named from another folder is still the same file, so a change of it is known.
    return {"level": level, "iou": iou, "min_score": min_score, "gt": str(real_path(gt)),
            "gt_sha256": file_digest(gt, str(gt)).sha256, "hierarchy": hierarchy.source,
            "hierarchy_sha256": hashlib.sha256(decides.encode("utf-8")).hexdigest(),
            "software": software(*SCORING)}


def _level(value: Any) -> str:
    return "full label" if value is None else f"level {value}"


def incomparable(settings: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """Why `baseline` (a METRICS.json) measured something other than an evaluation with `settings`; empty when alike."""
    theirs = baseline.get(SETTINGS_KEY)
    if not isinstance(theirs, dict):
        return []
    found = []
    for key, what, show in (("level", "categories at", _level), ("iou", "matching IoU", str),
                            ("min_score", "error counts at score", str)):
        if theirs.get(key) != settings[key]:
            found.append(f"{what} {show(theirs.get(key))} in the baseline, {show(settings[key])} here")
    if theirs.get("hierarchy_sha256") != settings["hierarchy_sha256"]:
        found.append(f"hierarchy {theirs.get('hierarchy')} (sha256 {str(theirs.get('hierarchy_sha256'))[:12]}) in the "
                     f"baseline, {settings['hierarchy']} (sha256 {settings['hierarchy_sha256'][:12]}) here")
    return found


def not_comparable(settings: dict[str, Any], baseline: dict[str, Any], other_gt: bool = False) -> str | None:
    """Why `baseline` (a METRICS.json) cannot be compared with an evaluation with `settings`, and what to do; None
    when it can. `other_gt`: other ground truth is compared all the same (--baseline-other-gt)."""
    differ = incomparable(settings, baseline)
    gt = other_ground_truth(settings, baseline)
    if not differ and (gt is None or other_gt):
        return None
    return ("; ".join([*differ, *([gt] if gt else [])])
            + ". Evaluate the baseline's predictions with the same --gt, --level, --iou, --min-score and --hierarchy"
            + (", or give --baseline-other-gt to compare scores on other ground truth all the same" if gt and not differ
               else ""))


def against_baseline(metrics: dict[str, Any], settings: dict[str, Any], predictions: dict[str, Any],
                     baseline: dict[str, Any], baseline_path: str | Path) -> list[str]:
    """The notes of an evaluation compared with `baseline` (comparable: `not_comparable`), one line for each thing that
    differs between the two sides: ground truth (compared as asked), model, mode, tiles, photos left without a line,
    verdict thresholds."""
    gt = other_ground_truth(settings, baseline)
    lines = [f"{AGAINST}{gt}; compared as --baseline-other-gt asks, so a change is not the model's alone"] if gt else []
    lines += model_differences(predictions, baseline, baseline_path)
    lines += software_lines(settings, predictions, baseline)
    return lines + [line for line in (unpredicted_difference(metrics, baseline), thresholds_difference(metrics, baseline))
                    if line]


def other_ground_truth(settings: dict[str, Any], baseline: dict[str, Any]) -> str | None:
    """How `baseline` (a METRICS.json) scored other ground truth than an evaluation with `settings`: another file, or
    the same file whose content changed since; None when its content is the same (wherever it lies) or not recorded."""
    theirs = baseline.get(SETTINGS_KEY)
    if not isinstance(theirs, dict) or theirs.get("gt_sha256") == settings["gt_sha256"]:
        return None
    then, now = str(theirs.get("gt_sha256"))[:12], settings["gt_sha256"][:12]
    if theirs.get("gt") == settings["gt"]:
        return (f"ground truth {settings['gt']} changed since the baseline was evaluated on it (sha256 {then} then, "
                f"{now} now): its photos or objects are not the ones the baseline counted")
    return f"ground truth {theirs.get('gt')} (sha256 {then}) in the baseline, {settings['gt']} (sha256 {now}) here"


def predictions_record(pred: str | Path) -> dict[str, Any]:
    """What made the predictions an evaluation scores, as their manifest (`PRED.predict.json`) records it, for
    METRICS.json's settings under "predictions": the file, the checkpoint, its identity by content, the mode and the tiles (None
    where the manifest records none: a file `bbuvl predict` did not write, a library caller's)."""
    manifest = predictions_manifest(pred)
    key = manifest.key if manifest is not None else None
    return {"file": str(real_path(pred)),
            "checkpoint": (manifest.checkpoint or None) if manifest is not None else None,
            "model": key.checkpoint if key is not None else None,
            "mode": manifest.mode if manifest is not None else None,
            "tiles": key.options.get("tiles") if key is not None else None,
            "software": (key.software or None) if key is not None else None}


def model_differences(predictions: dict[str, Any], baseline: dict[str, Any], baseline_path: str | Path) -> list[str]:
    """One line for each way the predictions `baseline` (a METRICS.json) scored were made otherwise than these
    (`predictions_record`): another model, mode or tiles, each naming both sides; one line when they were made alike,
    and one when either side does not say."""
    settings = baseline.get(SETTINGS_KEY)
    theirs = settings.get(PREDICTIONS_KEY) if isinstance(settings, dict) else None
    if not isinstance(theirs, dict):
        return [f"{AGAINST}{baseline_path} does not record which model made its predictions (written before METRICS.json "
                "recorded it): make sure it scores the model you mean to compare with"]
    unknown = [f"{who} predictions ({side.get('file')}) record no model: their file has no manifest of `bbuvl predict`"
               for who, side in (("the baseline's", theirs), ("these", predictions)) if side.get("model") is None]
    if unknown:
        return [AGAINST + line for line in unknown]
    at = (f"at {predictions['checkpoint']}" if theirs.get("checkpoint") == predictions["checkpoint"] else
          f"at {theirs.get('checkpoint')} in the baseline and at {predictions['checkpoint']} here")
    if all(theirs.get(k) == predictions[k] for k in ("model", "mode", "tiles")):
        return [f"{AGAINST}the same model on both sides (identity {_short(predictions['model'])}, {at}), in mode "
                f"{predictions['mode']} with tiles {predictions['tiles']}: a change comes from other prediction options, "
                "not the model"]
    lines = []
    if theirs.get("model") == predictions["model"]:
        lines.append(f"model: the same (identity {_short(predictions['model'])}, {at})")
    elif theirs.get("checkpoint") == predictions["checkpoint"]:
        lines.append(f"model: {predictions['checkpoint']} held another model when it made the baseline's predictions "
                     f"(identity {_short(theirs.get('model'))} then, {_short(predictions['model'])} here: trained again "
                     "or replaced in place)")
    else:
        lines.append(f"model: {theirs.get('checkpoint')} (identity {_short(theirs.get('model'))}) in the baseline, "
                     f"{predictions['checkpoint']} (identity {_short(predictions['model'])}) here")
    lines += [f"{key}: {theirs.get(key)} in the baseline, {predictions[key]} here" for key in ("mode", "tiles")
              if theirs.get(key) != predictions[key]]
    return [AGAINST + line for line in lines]


def software_lines(settings: dict[str, Any], predictions: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """A line when the baseline's predictions were made, or its numbers scored, by another program (bbu-vl's files,
    torch, transformers, ...: versions.py): a change may come from the upgrade, not the model; none when alike or
    not recorded."""
    theirs = baseline.get(SETTINGS_KEY) if isinstance(baseline.get(SETTINGS_KEY), dict) else {}
    made = theirs.get(PREDICTIONS_KEY) if isinstance(theirs.get(PREDICTIONS_KEY), dict) else {}
    lines = []
    for what, then, now in (("predicted", made.get("software"), predictions.get("software")),
                            ("scored", theirs.get("software"), settings.get("software"))):
        if isinstance(then, dict) and isinstance(now, dict) and (changed := software_differences(then, now)):
            lines.append(f"{AGAINST}the baseline was {what} by another program ({'; '.join(changed)}): a change may be "
                         "the upgrade's, not the model's")
    return lines


def unpredicted_difference(metrics: dict[str, Any], baseline: dict[str, Any]) -> str | None:
    """A line when the two sides left another number of ground-truth photos without a predictions line (an unfinished
    or sharded predict on one side), which count as missed; None when alike or not recorded."""
    keys = ("errors", "images_without_prediction")
    theirs, mine = _lookup(baseline, keys), _lookup(metrics, keys)
    if not (is_json_number(theirs) and is_json_number(mine)) or theirs == mine:
        return None
    return (f"{AGAINST}photos without a predictions line: {theirs} of {_lookup(baseline, ('errors', 'images'))} in the "
            f"baseline, {mine} of {_lookup(metrics, ('errors', 'images'))} here: their objects count as missed, so a "
            "change is partly which photos were predicted")


def thresholds_difference(metrics: dict[str, Any], baseline: dict[str, Any]) -> str | None:
    """A line when the two sides judged photo verdicts at other thresholds (each model's own, or one given on the
    command line): the fault rows at 'fail' and the verdict's accuracy then compare two operating points; None when
    alike or not recorded."""
    differ = []
    for key, which in (("thresholds", "photos predicted in one pass"), ("thresholds_tiled", "photos through tiles or zoom")):
        theirs, mine = _lookup(baseline, ("faults", key)), _lookup(metrics, ("faults", key))
        if isinstance(theirs, dict) and isinstance(mine, dict) and theirs != mine:
            differ.append(f"{which}: {_pair(theirs)} in the baseline, {_pair(mine)} here")
    if not differ:
        return None
    return (f"{AGAINST}verdict thresholds, {'; '.join(differ)}: the fault rows at 'fail' and the verdict's accuracy "
            "compare two operating points, fault AP and ROC AUC do not depend on them")


def _pair(thresholds: dict[str, Any]) -> str:
    return f"review {thresholds.get('review')}, fail {thresholds.get('fail')}"


def _short(digest: Any) -> str:
    return str(digest)[:12]


def unknown_settings(baseline: dict[str, Any], baseline_path: str | Path) -> str | None:
    """A warning when `baseline` does not record its settings (written before METRICS.json held them), else None."""
    if isinstance(baseline.get(SETTINGS_KEY), dict):
        return None
    return (f"{baseline_path}: the baseline's settings are unknown (its METRICS.json was written before they were "
            "recorded): its level, IoU, min score, ground truth and hierarchy may differ from this run's, so the "
            "comparison may not compare like with like; evaluate its predictions again to be sure")
