"""Small-parts guard: shapes smaller than one vision token are found with tiles, far above one pass and the constant box.

The small-shapes scene (10-24 px shapes in 448x336 photos, 1-3 a photo, `bbuvl data synth --object-px`) shown
whole at a 448x336 frame puts every shape inside one 28-px token. The recipe trains `configs/demo_shapes.yaml`
on 4x4 tiles of the training photos written at twice their size (`bbuvl data tile --zoom 2`: ~58 tokens a
sample), with the head reading the tower's pre-merge patches (`detection.fine_features`, as `make demo`'s stage B
does), and predicts 2x2 tiles at the same scale (`--tiles 2x2 --tile-zoom 2`, 3.75x one pass's tokens).
docs/tiles.md has the curve over steps and seeds, and one pass's numbers beside it: without fine features one
recipe seed of three stayed at 0.33 after 800 steps; with them, 0.67-0.89 over six seeds at 500 steps. It runs
with the slow tests: about 6-9 minutes at one thread.

The second guard needs no tiles: whole photos, one pass, with the head reading the tower's pre-merge patches
(`detection.fine_features`, docs/tiles.md "Finer features": 0.61-0.87 AP50 over four seeds after 300 steps,
the same recipe without them 0.00-0.16). In the default run it trains on 224x168 photos of the same 10-24 px
shapes (48 tokens a photo instead of 192: every shape is still inside one token, and a step costs a quarter),
about 3 minutes at one thread; the 448x336 scene is the acceptance one. Both run with the slow tests (`make
test-all`): beside the stage-A guard (tests/test_learnability.py) the quick one took `make test` on a fresh clone
past 10 minutes. The default run keeps fine features' unit tests (tests/model/test_vlm_fine_features.py), and
`make demo` trains stage B with them. docs/tiles.md has the spread of both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
from tests.recipes import WITHOUT_GROUNDING
from tests.threads import guard_threads

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_shapes.yaml"
STEPS = int(os.environ.get("BBUVL_SMALL_GUARD_STEPS", "500"))
TILES = {"tiles": "2x2", "tile_zoom": 2.0, "tile_whole": False}
HEAD_AP50 = 0.6
ABOVE_PRIOR = 0.4
MAX_TOKEN_RATIO = 4.0


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
            "model.max_vision_tokens_per_batch=1536", "detection.fine_features=true", *WITHOUT_GROUNDING,
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


@pytest.mark.slow
def test_tiles_find_and_name_sub_token_shapes_far_above_the_constant_box(small_run):
    tiled, one, prior = ap50(small_run, "tiled"), ap50(small_run, "one"), small_run["prior"]
    print(f"small shapes, head AP50: tiles {tiled:.3f}, one pass {one:.3f}, constant box {prior.ap50:.3f}")
    assert tiled >= max(HEAD_AP50, prior.ap50 + ABOVE_PRIOR), (tiled, one, prior)


@pytest.mark.slow
def test_tiles_cost_at_most_four_times_the_vision_tokens_of_one_pass(small_run):
    one = sum(r.vision_tokens for r in small_run["one"])
    tiled = sum(r.vision_tokens for r in small_run["tiled"])
    assert one > 0 and tiled <= MAX_TOKEN_RATIO * one, (tiled, one)


@dataclass(frozen=True)
class OnePass:
    """A whole-photo small-shapes recipe with fine features, and the photo size it trains and predicts at."""

    size: tuple[int, int]
    steps: int
    seed: int


ONE_PASS_AP50 = 0.6
# The quick scene: 224x168 photos (48 tokens), 300 steps, about 3 minutes at one thread beside the other worker.
QUICK = OnePass((224, 168), int(os.environ.get("BBUVL_SMALL_ONE_PASS_STEPS", "300")), seed=300)
# The acceptance scene: 448x336 (192 tokens), 300 steps (docs/tiles.md: 0.61-0.87 over four seeds).
FULL = OnePass((448, 336), 300, seed=300)


@pytest.fixture(scope="module", params=[pytest.param(QUICK, marks=pytest.mark.slow), pytest.param(FULL, marks=pytest.mark.slow)], ids=["224x168", "448x336"])
def one_pass_run(request, tmp_path_factory) -> dict:
    """Whole photos with fine features, as bench/small_shapes_one_pass.py trains them; one-pass predictions."""
    from bbuvl.train.trainer import train

    recipe: OnePass = request.param
    root = tmp_path_factory.mktemp("small-one-pass")
    threads = torch.get_num_threads()
    torch.set_num_threads(guard_threads())
    try:
        synthesize_shapes(root / "data", 1000, 40, seed=recipe.seed, size=recipe.size, min_objects=1, max_objects=3,
                          object_px=(10, 24), num_teachers=0)
        model_dir = build_tiny_model(root / "tiny", seed=recipe.seed)
        cfg = load_config(CONFIG, [
            f"model.path={model_dir}", f"data.train={root / 'data' / 'train.jsonl'}", "data.val=null",
            f"training.output_dir={root / 'run'}", f"training.max_steps={recipe.steps}", f"training.seed={recipe.seed}",
            "training.logging_steps=100", "training.save_steps=100000", "training.eval_steps=100000", "monitor.enabled=false",
            "model.min_pixels=3136", "model.max_pixels=150528", "model.max_vision_tokens=192",
            "model.max_vision_tokens_per_batch=1536", "detection.fine_features=true", *WITHOUT_GROUNDING,
        ])
        final = train(cfg, progress=False)["final"]
        val = root / "data" / "val.jsonl"
        records = read_records(val)
        one = Predictor.load(final, device="cpu").predict([resolve_image(val, r.image) for r in records], "head")
    finally:
        torch.set_num_threads(threads)
    return {"records": records, "one": one, "prior": best_constant_box(records), "recipe": recipe}


@pytest.mark.timeout(1200)
def test_fine_features_find_and_name_sub_token_shapes_in_one_pass(one_pass_run):
    one, prior, recipe = ap50(one_pass_run, "one"), one_pass_run["prior"], one_pass_run["recipe"]
    tokens = sum(r.vision_tokens for r in one_pass_run["one"]) / len(one_pass_run["one"])
    print(f"small shapes at {recipe.size[0]}x{recipe.size[1]}, one pass with fine features, head AP50 {one:.3f} "
          f"at {tokens:.0f} tokens a photo, constant box {prior.ap50:.3f}")
    assert one >= max(ONE_PASS_AP50, prior.ap50 + ABOVE_PRIOR), (one, prior)
    # One pass: the photo at full size, no more tokens than its 28-px cells.
    assert tokens <= (recipe.size[0] // 28) * (recipe.size[1] // 28)
