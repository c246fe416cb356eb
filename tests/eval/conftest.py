"""A small synthetic validation set with real photos, and a predictions file made by perturbing its ground truth."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from bbuvl.data.schema import read_records, resolve_image


@dataclass
class EvalFiles:
    gt: Path
    pred: Path


def write_perturbed_predictions(gt: Path, out: Path, seed: int = 0, jitter: float = 3.0) -> Path:
    """Predictions like `bbuvl predict` writes: jittered boxes, some labels swapped, some missed, one error, one unreadable answer."""
    rng = random.Random(seed)
    records = read_records(gt)
    labels = sorted({o.desc for r in records for o in r.objects})
    with out.open("w", encoding="utf-8") as fh:
        for i, r in enumerate(records):
            objects = []
            for o in r.objects:
                if rng.random() < 0.1:
                    continue
                b = [v + rng.gauss(0, jitter) for v in o.bbox_2d]
                box = [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]
                label = o.desc if rng.random() < 0.8 else rng.choice(labels)
                objects.append({"bbox_2d": box, "label": label, "score": round(rng.random(), 4)})
            line = {"image": str(resolve_image(gt, r.image)), "width": r.width, "height": r.height, "objects": objects,
                    "raw": json.dumps([{"bbox_2d": o["bbox_2d"], "label": o["label"]} for o in objects], ensure_ascii=False),
                    "error": None}
            if i == 1:
                line.update(objects=[], raw="抱歉，我无法识别。")
            if i == 2:
                line.update(objects=[], raw=None, error="cannot decode image")
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
    return out


@pytest.fixture(scope="module")
def eval_files(tmp_path_factory) -> EvalFiles:
    """6 synthetic validation photos (320x240) and perturbed predictions for them."""
    from bbuvl.synthetic.dataset import synthesize

    root = tmp_path_factory.mktemp("eval")
    synthesize(root / "data", 1, 6, seed=2, size=(320, 240), num_teachers=1)
    gt = root / "data" / "val.jsonl"
    return EvalFiles(gt=gt, pred=write_perturbed_predictions(gt, root / "pred.jsonl"))
