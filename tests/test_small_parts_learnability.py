"""Small-parts guard: shapes smaller than one vision token are found with tiles, far above one pass and the constant box.

The small-shapes scene (10-24 px shapes in 448x336 photos, 1-3 a photo, `bbuvl data synth --object-px`) shown
whole at a 448x336 frame puts every shape inside one 28-px token. The recipe trains `configs/demo_shapes.yaml`
on 4x4 tiles of the training photos written at twice their size (`bbuvl data tile --zoom 2`: ~58 tokens a
sample), and predicts 2x2 tiles at the same scale (`--tiles 2x2 --tile-zoom 2`, 3.75x one pass's tokens).
docs/tiles.md has the curve over steps and seeds, and one pass's numbers beside it. The bar does not yet hold
over seeds (one of three recipes' seeds stays at 0.33 after 800 steps), so the guard runs with the slow tests
until the recipe is robust.

The second guard needs no tiles: whole photos, one pass, with the head reading the tower's pre-merge patches
(`detection.fine_features`, docs/tiles.md "Finer features": 0.61-0.87 AP50 over three seeds after 300 steps,
the same recipe without them 0.00-0.16).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bbuvl.config import load_config
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.data.tiling import TileSpec, tile_dataset
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.eval.prior import best_constant_box
from bbuvl.infer.predictor import Predictor
from bbuvl.synthetic.shapes import synthesize_shapes
from bbuvl.tiny.model import build_tiny_model
from tests.threads import guard_threads

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_shapes.yaml"
STEPS = int(os.environ.get("BBUVL_SMALL_GUARD_STEPS", "500"))
TILES = {"tiles": "2x2", "tile_zoom": 2.0, "tile_whole": False}
HEAD_AP50 = 0.6
ABOVE_PRIOR = 0.4
MAX_TOKEN_RATIO = 4.0


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> dict:
    """A model trained on zoomed tiles of small shapes; its predictions in one pass and with tiles."""
    from bbuvl.train.trainer import train

    root = tmp_path_factory.mktemp("small-guard")
    threads = torch.get_num_threads()
    torch.set_num_threads(guard_threads())
    try:
        synthesize_shapes(root / "data", 1000, 40, seed=23, size=(448, 336), min_objects=1, max_objects=3,
                          object_px=(10, 24), num_teachers=0)
        tile_dataset(root / "data" / "train.jsonl", root / "tiles",
                     TileSpec((4, 4), overlap=0.15, zoom=2.0, whole=False, empty=0.2, seed=23), num_teachers=0)
        model_dir = build_tiny_model(root / "tiny", seed=0)
        cfg = load_config(CONFIG, [
            f"model.path={model_dir}", f"data.train={root / 'tiles' / 'train.jsonl'}", "data.val=null",
            f"training.output_dir={root / 'run'}", f"training.max_steps={STEPS}", "training.logging_steps=100",
            "training.save_steps=100000", "training.eval_steps=100000", "monitor.enabled=false",
            # Tiles keep their written size (min_pixels low); a whole 448x336 photo is 192 tokens at full size.
            "model.min_pixels=3136", "model.max_pixels=150528", "model.max_vision_tokens=192",
            "model.max_vision_tokens_per_batch=1536",
        ])
        final = train(cfg, progress=False)["final"]
        val = root / "data" / "val.jsonl"
        records = read_records(val)
        photos = [resolve_image(val, r.image) for r in records]
        predictor = Predictor.load(final, device="cpu")
        one = predictor.predict(photos, "head")
        tiled = predictor.predict(photos, "head", **TILES)
    finally:
        torch.set_num_threads(threads)
    return {"records": records, "one": one, "tiled": tiled, "prior": best_constant_box(records)}


def ap50(run: dict, key: str) -> float:
    return coco_evaluate(run["records"], [[d.to_dict() for d in r.objects] for r in run[key]]).summary["AP50"] or 0.0


def test_tiles_find_and_name_sub_token_shapes_far_above_the_constant_box(small_run):
    tiled, one, prior = ap50(small_run, "tiled"), ap50(small_run, "one"), small_run["prior"]
    print(f"small shapes, head AP50: tiles {tiled:.3f}, one pass {one:.3f}, constant box {prior.ap50:.3f}")
    assert tiled >= max(HEAD_AP50, prior.ap50 + ABOVE_PRIOR), (tiled, one, prior)


def test_tiles_cost_at_most_four_times_the_vision_tokens_of_one_pass(small_run):
    one = sum(r.vision_tokens for r in small_run["one"])
    tiled = sum(r.vision_tokens for r in small_run["tiled"])
    assert one > 0 and tiled <= MAX_TOKEN_RATIO * one, (tiled, one)


ONE_PASS_STEPS = int(os.environ.get("BBUVL_SMALL_ONE_PASS_STEPS", "300"))
ONE_PASS_SEED = 300  # one of the seeds docs/tiles.md measured (0.867 there, 1 thread)
ONE_PASS_AP50 = 0.6


@pytest.fixture(scope="module")
def one_pass_run(tmp_path_factory) -> dict:
    """Whole photos with fine features, as bench/small_shapes_one_pass.py trains them; one-pass predictions."""
    from bbuvl.train.trainer import train

    root = tmp_path_factory.mktemp("small-one-pass")
    threads = torch.get_num_threads()
    torch.set_num_threads(guard_threads())
    try:
        synthesize_shapes(root / "data", 1000, 40, seed=ONE_PASS_SEED, size=(448, 336), min_objects=1, max_objects=3,
                          object_px=(10, 24), num_teachers=0)
        model_dir = build_tiny_model(root / "tiny", seed=ONE_PASS_SEED)
        cfg = load_config(CONFIG, [
            f"model.path={model_dir}", f"data.train={root / 'data' / 'train.jsonl'}", "data.val=null",
            f"training.output_dir={root / 'run'}", f"training.max_steps={ONE_PASS_STEPS}", f"training.seed={ONE_PASS_SEED}",
            "training.logging_steps=100", "training.save_steps=100000", "training.eval_steps=100000", "monitor.enabled=false",
            "model.min_pixels=3136", "model.max_pixels=150528", "model.max_vision_tokens=192",
            "model.max_vision_tokens_per_batch=1536", "detection.fine_features=true",
        ])
        final = train(cfg, progress=False)["final"]
        val = root / "data" / "val.jsonl"
        records = read_records(val)
        one = Predictor.load(final, device="cpu").predict([resolve_image(val, r.image) for r in records], "head")
    finally:
        torch.set_num_threads(threads)
    return {"records": records, "one": one, "prior": best_constant_box(records)}


@pytest.mark.timeout(1200)
def test_fine_features_find_and_name_sub_token_shapes_in_one_pass(one_pass_run):
    one, prior = ap50(one_pass_run, "one"), one_pass_run["prior"]
    tokens = sum(r.vision_tokens for r in one_pass_run["one"]) / len(one_pass_run["one"])
    print(f"small shapes, one pass with fine features, head AP50 {one:.3f} at {tokens:.0f} tokens a photo, "
          f"constant box {prior.ap50:.3f}")
    assert one >= max(ONE_PASS_AP50, prior.ap50 + ABOVE_PRIOR), (one, prior)
    assert tokens <= 192
