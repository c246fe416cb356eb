"""One pass vs tiles vs zoom, on the same checkpoint and photos, in one run: AP50 by size, vision tokens, seconds.

    .venv/bin/python bench/small_parts.py --checkpoint RUN/final --val small/val.jsonl --grid 2x2
    .venv/bin/python bench/small_parts.py --checkpoint demo_out/bbu/run/final --scene bbu-wide --grid 4x3 \\
        --containers bbu基带处理单元,ODF,接地排 --category 螺丝连接点

Each plan predicts every validation photo (`--mode`, head by default) and is scored with the project's COCO
evaluation: AP50 per label and class-agnostic, AP50 at the category level (`--level 1`), and recall and AP50 per
object-size bucket in vision tokens at the checkpoint's frame (`bbuvl.eval.size_buckets`). The best constant box
of the same photos is printed first: every number has to clear it to mean anything. `--scene` renders photos
from a seed no demo uses instead of reading `--val`: `small-shapes` (10-24 px shapes in 448x336, 1-3 a photo) or
`bbu-wide` (wide equipment-room photos at 4x the demo's 448x336 side). Plans (docs/tiles.md):

- `one pass`: the whole photo at the frame;
- `tiles CxR`: the grid only (about C*R times the tokens);
- `tiles CxR + whole`: the grid and the whole photo;
- `zoom`: the whole photo, then each container's crop (only with `--containers`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench_files import check_inputs

from bbuvl.data.regions import parse_grid
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.data.images import load_image
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.eval.prior import best_constant_box
from bbuvl.eval.size_buckets import TOKEN_BUCKETS, size_metrics
from bbuvl.infer.predictor import Predictor
from bbuvl.synthetic.dataset import synthesize
from bbuvl.synthetic.shapes import synthesize_shapes

UNSEEN_SEED = 7919  # no demo, test or guard renders from this seed


def render_scene(scene: str, folder: Path, n_val: int) -> Path:
    """Validation photos of `scene` from UNSEEN_SEED; returns the val.jsonl."""
    if scene == "small-shapes":
        synthesize_shapes(folder, 0, n_val, seed=UNSEEN_SEED, size=(448, 336), min_objects=1, max_objects=3,
                          object_px=(10, 24), num_teachers=0)
    else:
        synthesize(folder, 0, n_val, seed=UNSEEN_SEED, size=(1792, 1344), num_teachers=0)
    return folder / "val.jsonl"


def run_plan(predictor: Predictor, photos: list, options: dict, mode: str) -> tuple[list, float, float]:
    """Predictions (dicts) per photo, mean vision tokens per photo and seconds per photo for one plan's options."""
    preds, tokens = [], 0
    start = time.perf_counter()
    for image in photos:
        [result] = predictor.predict([image], mode, **options)
        preds.append([d.to_dict() for d in result.objects])
        tokens += result.vision_tokens
    return preds, tokens / len(photos), (time.perf_counter() - start) / len(photos)


def main() -> None:
    """Predict with every plan and print one table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--val", type=Path, help="Validation JSONL (or use --scene).")
    ap.add_argument("--scene", choices=("small-shapes", "bbu-wide"), help="Render validation photos from an unseen seed.")
    ap.add_argument("--n-val", type=int, default=40)
    ap.add_argument("--grid", default="2x2", help="Tile grid, COLSxROWS.")
    ap.add_argument("--overlap", type=float, default=0.15)
    ap.add_argument("--zoom", type=float, help="Frame pixels per stored pixel for tiles (default: each tile fills the frame).")
    ap.add_argument("--containers", default="", help="Comma-separated categories to zoom into (enables the zoom plan).")
    ap.add_argument("--mode", default="head")
    ap.add_argument("--level", type=int, default=1, help="Hierarchy level of the category AP50 column.")
    ap.add_argument("--category", default="", help="A category at --level whose own AP50 gets a column (e.g. 螺丝连接点).")
    args = ap.parse_args()
    if (args.val is None) == (args.scene is None):
        ap.error("give exactly one of --val and --scene")
    try:
        check_inputs([args.checkpoint], [args.val])
    except (OSError, ValueError) as e:
        ap.error(str(e))
    grid = parse_grid(args.grid)
    with tempfile.TemporaryDirectory() as tmp:
        val = args.val or render_scene(args.scene, Path(tmp) / "scene", args.n_val)
        records = read_records(val)
        photos = [load_image(resolve_image(val, r.image)).image for r in records]
        predictor = Predictor.load(args.checkpoint, device="cpu")
        predictor.check_mode(args.mode)
        prior = best_constant_box(records)
        tiles = {"tiles": f"{grid[0]}x{grid[1]}", "tile_overlap": args.overlap, "tile_zoom": args.zoom}
        plans: dict[str, dict] = {
            "one pass": {},
            f"tiles {grid[0]}x{grid[1]}": {**tiles, "tile_whole": False},
            f"tiles {grid[0]}x{grid[1]} + whole": {**tiles, "tile_whole": True},
        }
        containers = [c for c in args.containers.split(",") if c]
        if containers:
            plans["zoom"] = {"zoom_containers": containers, "tile_zoom": args.zoom}
        print(f"{len(records)} photos from {val}; mode {args.mode}; best constant box AP50 {prior.ap50 or 0:.3f} per label, "
              f"{prior.ap50_agnostic:.3f} class-agnostic")
        buckets = [name for name, _, _ in TOKEN_BUCKETS]
        own = f" {args.category[:6]:>6}" if args.category else ""
        header = (f"{'plan':<22} {'tokens':>7} {'s/photo':>8} {'AP50':>6} {'agn.':>6} {'L' + str(args.level):>6}{own}"
                  + "".join(f" {b:>13}" for b in buckets))
        print(header)
        print(" " * (59 + len(own)) + "".join(f" {'AP50 / rec.':>13}" for _ in buckets))
        for name, plan in plans.items():
            preds, tokens, seconds = run_plan(predictor, photos, plan, args.mode)
            result = coco_evaluate(records, preds)
            level = coco_evaluate(records, preds, level=args.level)
            sizes = size_metrics(records, preds, predictor.contract)

            def fmt(v: float | None) -> str:
                return "  -  " if v is None else f"{v:.3f}"

            cells = "".join(f" {fmt(sizes.buckets[b]['AP50_agnostic']):>6}/{fmt(sizes.buckets[b]['recall']):<6}" for b in buckets)
            mine = f" {fmt(level.per_category.get(args.category, {}).get('AP50')):>6}" if args.category else ""
            print(f"{name:<22} {tokens:>7.0f} {seconds:>8.3f} {fmt(result.summary['AP50']):>6} {fmt(result.agnostic['AP50']):>6} "
                  f"{fmt(level.summary['AP50']):>6}{mine}{cells}", flush=True)
        print("objects per bucket: " + ", ".join(f"{b} {sizes.buckets[b]['objects']}" for b in buckets))


if __name__ == "__main__":
    main()
