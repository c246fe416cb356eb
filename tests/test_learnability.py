"""Learnability guard: a tiny model trained here must find *where* a shape is, not only *what* it is.

Every other test checks a stage in isolation; this one checks that the whole chain (shapes renderer ->
chat encoding -> vision tower -> vision positions -> LLM -> detection head -> predictor -> COCO AP) can
learn, from a random initialisation, in the time a test may take. It trains `configs/demo_shapes.yaml`
(what `make demo` runs in its stage A) with fewer steps and photos. docs/localisation.md has the
measurements behind the bars, and the break it was checked against (boxes shifted by one token cell).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bbuvl.config import load_config
from bbuvl.data.boxes import box_iou
from bbuvl.data.schema import read_records, resolve_image, write_dataset
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.eval.prior import best_constant_box
from bbuvl.infer.predictor import Predictor
from tests.recipes import WITHOUT_GROUNDING
from tests.threads import guard_threads
from bbuvl.synthetic.shapes import synthesize_shapes
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import train

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_shapes.yaml"
# A test budget, not the demo's: docs/localisation.md has AP against steps.
STEPS = int(os.environ.get("BBUVL_GUARD_STEPS", "550"))
MODES = ("head", "name", "generate")


@dataclass(frozen=True)
class Scene:
    """A shapes task and what a model trained on it for `steps` must reach (AP50, per label)."""

    min_objects: int
    max_objects: int
    steps: int
    head_ap50: float
    name_ap50: float


# One shape per photo is the default-run guard: 550 steps (about 3 minutes on 2 idle cores). Over 8 seeds (photos,
# initialisation, order) at 1 and 2 threads its head AP50 ran 0.708-0.948 and name mode 0.658-0.948, the head's
# top box named right on >= 97% of photos and centres correlating >= 0.99 in every run; another machine gave 0.594
# (docs/localisation.md, section 10). The spread is mostly box tightness at IoU 0.5, and the suite has no room for
# more steps, so the bars sit below the whole spread: 0.5 for both, where boxes one token cell off score 0.003. The stage-A recipe trains the LLM at
# 3x the other groups' rate and sends 0.3 of the head's gradient into the VLM, which is what lets both branches
# name the colour this early. The demo's 1,000 steps and the multi-shape scene run under -m slow.
ONE = Scene(1, 1, STEPS, head_ap50=0.5, name_ap50=0.5)
ONE_FULL = Scene(1, 1, 1000, head_ap50=0.9, name_ap50=0.5)
SEVERAL = Scene(1, 3, 1000, head_ap50=0.6, name_ap50=0.3)
ABOVE_PRIOR = 0.4
CENTRE_CORRELATION = 0.9


def train_and_predict(root: Path, scene: Scene, overrides: tuple[str, ...] = ()) -> dict:
    """Train the stage-A recipe (with config `overrides`) on `scene`; predict its validation photos in every mode."""
    threads = torch.get_num_threads()
    # The suite runs one test at a time: this one may use two cores, unless OMP_NUM_THREADS asks for fewer. The
    # bars hold at 1 and 2 threads alike (docs/localisation.md has the spread at both).
    torch.set_num_threads(guard_threads())
    synthesize_shapes(root / "data", 600, 40, seed=11, size=(224, 224),
                      min_objects=scene.min_objects, max_objects=scene.max_objects)
    if os.environ.get("BBUVL_GUARD_BREAK") == "shift":  # the deliberate break: every training box one cell right/down
        train_jsonl = root / "data" / "train.jsonl"
        write_dataset(train_jsonl, [r.model_copy(update={"objects": [
            o.model_copy(update={"bbox_2d": [min(v + 28, side) for v, side in zip(o.bbox_2d, (r.width, r.height) * 2)]})
            for o in r.objects]}) for r in read_records(train_jsonl)])
    model_dir = build_tiny_model(root / "tiny", seed=0)
    cfg = load_config(CONFIG, [
        f"model.path={model_dir}", f"data.train={root / 'data' / 'train.jsonl'}", "data.val=null",
        f"training.output_dir={root / 'run'}", f"training.max_steps={scene.steps}", "training.logging_steps=50",
        "training.save_steps=100000", "training.eval_steps=100000", "monitor.enabled=false",
        # The head's and name mode's bars and their spread were measured without the grounding terms, which teach
        # generate mode (docs/grpo.md; tests/test_generate_learnability.py guards them) and cost this guard time.
        *WITHOUT_GROUNDING, *overrides,
    ])
    try:
        final = train(cfg, progress=False)["final"]
        val = root / "data" / "val.jsonl"
        records = read_records(val)
        paths = [resolve_image(val, r.image) for r in records]
        predictor = Predictor.load(final, device="cpu")
        preds = {mode: [[d.to_dict() for d in objs] for objs in predictor.predict_detection(paths, mode=mode)]
                 for mode in MODES}
    finally:
        torch.set_num_threads(threads)
    return {"records": records, "preds": preds, "prior": best_constant_box(records), "scene": scene}


@pytest.fixture(scope="module", params=[ONE, pytest.param(ONE_FULL, marks=pytest.mark.slow),
                                        pytest.param(SEVERAL, marks=pytest.mark.slow)], ids=["one", "one-full", "several"])
def shapes_run(request, tmp_path_factory) -> dict:
    """A trained stage-A run and its predictions, per scene."""
    return train_and_predict(tmp_path_factory.mktemp("guard"), request.param)


@pytest.mark.parametrize("mode", ["head", "name"])
def test_finds_and_names_the_shapes_far_above_the_best_constant_box(shapes_run, mode):
    result = coco_evaluate(shapes_run["records"], shapes_run["preds"][mode])
    prior, scene = shapes_run["prior"], shapes_run["scene"]
    bar = scene.head_ap50 if mode == "head" else scene.name_ap50
    assert result.summary["AP50"] >= max(bar, prior.ap50 + ABOVE_PRIOR), (mode, result.summary, result.agnostic, prior)


@pytest.mark.parametrize("mode", ["head", "name"])
def test_boxes_follow_the_shapes(shapes_run, mode):
    """Each shape's best-overlapping box moves with it: box centres correlate with the truth's on both axes."""
    records, preds = shapes_run["records"], shapes_run["preds"][mode]
    truth, found = [], []
    for p, r in zip(preds, records):
        assert p, f"{r.image}: nothing found"
        for o in r.objects:
            g = o.bbox_2d
            b = max(p, key=lambda d: box_iou(d["bbox_2d"], g))["bbox_2d"]
            found.append([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
            truth.append([(g[0] + g[2]) / 2, (g[1] + g[3]) / 2])
    t, f = torch.tensor(truth), torch.tensor(found)
    for axis in (0, 1):
        corr = float(torch.corrcoef(torch.stack([t[:, axis], f[:, axis]]))[0, 1])
        assert corr >= CENTRE_CORRELATION, ("xy"[axis], corr)


def test_generate_answers_valid_json_with_vocabulary_labels(shapes_run):
    records, preds = shapes_run["records"], shapes_run["preds"]["generate"]
    vocabulary = {o.desc for r in records for o in r.objects}
    assert all(len(p) >= 1 for p in preds)  # constrained decoding: every answer parses and names something
    assert {d["label"] for p in preds for d in p} <= vocabulary

