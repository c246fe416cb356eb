"""Every number `bbuvl eval` writes is the same whatever order the files list photos and boxes in (eval/order.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bbuvl.cli.evaluate import evaluate
from bbuvl.data.schema import read_records
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.eval.prior import best_constant_box

app = typer.Typer()
app.command()(evaluate)
runner = CliRunner()


def tied_predictions(gt: Path, out: Path) -> Path:
    """Predictions whose scores tie across photos (one decimal) and inside a photo (one box under two labels)."""
    rng = random.Random(0)
    records = read_records(gt)
    labels = sorted({o.desc for r in records for o in r.objects})
    with out.open("w", encoding="utf-8") as fh:
        for r in records:
            objects = []
            for o in r.objects:
                box = [v + rng.uniform(-4, 4) for v in o.bbox_2d]
                box = [min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])]
                score = rng.choice([0.3, 0.6, 0.9])
                objects.append({"bbox_2d": box, "label": o.desc, "score": score})
                objects.append({"bbox_2d": box, "label": rng.choice(labels), "score": score})
            fh.write(json.dumps({"image": r.image, "width": r.width, "height": r.height, "objects": objects,
                                 "error": None}, ensure_ascii=False) + "\n")
    return out


def shuffled(path: Path, out: Path, seed: int) -> Path:
    """`path` with its lines, and the boxes of each line, in another order."""
    rng = random.Random(seed)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        rng.shuffle(line["objects"])
    rng.shuffle(lines)
    out.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return out


def metrics(gt: Path, pred: Path, out: Path) -> dict:
    result = runner.invoke(app, ["--pred", str(pred), "--gt", str(gt), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text(encoding="utf-8"))
    del written["settings"]  # names the files, and the ground truth's digest, which differ
    return written


def test_every_metric_is_the_same_whatever_order_the_lines_and_boxes_come_in(tmp_path):
    from bbuvl.synthetic.dataset import synthesize

    synthesize(tmp_path / "data", 1, 10, seed=2, size=(320, 240), num_teachers=1, framing="closeup")
    gt = tmp_path / "data" / "val.jsonl"
    pred = tied_predictions(gt, tmp_path / "data" / "pred.jsonl")
    first = metrics(gt, pred, tmp_path / "m0.json")
    for seed in (1, 2, 3):
        other = metrics(shuffled(gt, tmp_path / "data" / f"gt{seed}.jsonl", seed),
                        shuffled(pred, tmp_path / "data" / f"pred{seed}.jsonl", seed), tmp_path / f"m{seed}.json")
        assert other == first, seed


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_prior_and_coco_ap_of_tied_scores_do_not_depend_on_the_photos_order(tmp_path):
    from bbuvl.synthetic.dataset import synthesize

    synthesize(tmp_path / "data", 1, 40, seed=3, size=(320, 240), num_teachers=1, framing="closeup")
    records = read_records(tmp_path / "data" / "val.jsonl")
    predictions = [[{"bbox_2d": o.bbox_2d, "label": o.desc, "score": 1.0} for o in r.objects[::2]] for r in records]
    prior, coco = best_constant_box(records), coco_evaluate(records, predictions)
    for seed in (1, 2):
        order = list(range(len(records)))
        random.Random(seed).shuffle(order)
        assert best_constant_box([records[i] for i in order]) == prior
        again = coco_evaluate([records[i] for i in order], [predictions[i][::-1] for i in order])
        assert again.summary == coco.summary and again.agnostic == coco.agnostic and again.curves == coco.curves
