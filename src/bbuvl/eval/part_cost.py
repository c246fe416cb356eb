"""What leaving vision positions out of an export costs, in COCO AP on validation photos (model/export.py).

Both arms are the same checkpoint answering the same photos in generate mode, greedy and unconstrained (what a
stock server decodes): once as bbu-vl runs it, once with the vision positions' projection zeroed, which adds
exactly nothing to the vision tokens and so answers as the exported folder does.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from bbuvl.data.schema import read_lines, read_records, resolve_image
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import index_ground_truth, read_predictions
from bbuvl.infer.predictor import Predictor
from bbuvl.model.checkpoint import POSITIONS_FILE
from bbuvl.model.export import PartCost, Scores


def generate_scores(predictor: Predictor, val: Path, batch_size: int = 4) -> tuple[Scores, list[str]]:
    """Generate-mode AP, AP50 and class-agnostic AP50 of `predictor` on the photos of `val` (greedy, unconstrained),
    and each photo's raw answer."""
    rows = read_lines(val)
    records = [sample.student for _, sample in rows]
    index_ground_truth(records, val, [no for no, _ in rows])  # one photo twice: refused before the model answers
    if not records:
        raise ValueError(f"{val}: no photos to measure on")
    lines = []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        paths = [str(resolve_image(val, r.images[0])) for r in chunk]
        for record, line in zip(chunk, predictor.predict_lines(paths, "generate", constrained=False)):
            lines.append({**line, "image": record.images[0]})  # named as the JSONL names it, as predict writes it
    # An error without an answer: the photo never reached the model (one it answered unreadably is a score like any)
    if failed := [(no, line) for (no, _), line in zip(rows, lines) if line.get("error") and line.get("raw") is None]:
        # A photo neither arm can read scores nothing in both: the card said "AP50 0.000 with, 0.000 without" of a
        # --val whose photos had all moved, a cost measured on no photo.
        no, line = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise ValueError(f"{val}:{no}: image {line['image']}: {line['error']}{more}; the cost would be measured without "
                         "it: fix or remove it, or give --val photos that are all there")
    with tempfile.TemporaryDirectory() as tmp:
        pred = Path(tmp) / "predictions.jsonl"
        pred.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
        metrics = evaluate_predictions(records, val, read_predictions(pred), pred).metrics
    scores = Scores(AP=float(metrics["AP"]), AP50=float(metrics["AP50"]), AP50_agnostic=float(metrics["AP50_agnostic"]))
    return scores, [line["raw"] for line in lines]


def vision_positions_cost(checkpoint: str | Path, val: str | Path, batch_size: int = 4,
                          device: str | None = None) -> PartCost:
    """Scores on `val` with the checkpoint's vision positions and without them (ValueError when it has none)."""
    val = Path(val)
    if not val.is_file():
        raise FileNotFoundError(f"{val}: no such validation file (--val)")
    predictor = Predictor.load(checkpoint, device=device)
    truth = {o.desc for r in read_records(val) for o in r.objects}
    if truth and not truth & set(predictor.prompt.labels):
        # Both scores would be 0 whatever the positions do, and the card would say they cost nothing
        raise ValueError(f"{val}: none of its {len(truth)} labels (e.g. {sorted(truth)[0]!r}) is one {checkpoint} "
                         f"answers with (e.g. {sorted(predictor.prompt.labels)[0]!r}): the cost measured there would "
                         "mean nothing; give --val photos of the checkpoint's own labels (its run's data.val)")
    positions = predictor.model.vision_positions
    if positions is None:
        raise ValueError(f"{checkpoint}: has no vision positions ({POSITIONS_FILE}); nothing to drop")
    with_part, answers = generate_scores(predictor, val, batch_size)
    with torch.no_grad():
        positions.proj.weight.zero_()
        positions.proj.bias.zero_()
    without_part, exported = generate_scores(predictor, val, batch_size)
    changed = sum(a != b for a, b in zip(answers, exported))
    return PartCost(POSITIONS_FILE, str(val), len(answers), with_part, without_part, changed)
