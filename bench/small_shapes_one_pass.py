"""Sub-token shapes in one pass: the whole-photo recipe, with and without a head option, over seeds (docs/tiles.md).

    .venv/bin/python bench/small_shapes_one_pass.py --seeds 100,200 --steps 300 --out runs/fine.jsonl
    .venv/bin/python bench/small_shapes_one_pass.py --seeds 100,200 --steps 300 --out runs/fine.jsonl detection.fine_features=true

The small-shapes scene (`bbuvl data synth --scene shapes --size 448x336 --object-px 10-24`, 1-3 shapes a photo)
shown whole at its 448x336 frame (192 tokens): every shape lies inside one 28-px token. Each run trains
`configs/demo_shapes.yaml` on `--train` whole photos for `--steps` steps (the seed sets the photos, the tiny
model's initialisation and the training order), then predicts the `--val` validation photos of the same seed in
one pass (head mode) at every `--eval-every` steps and scores them with the project's COCO evaluation: AP50 per
label and class-agnostic, beside the best constant box. Each run is a subprocess with its thread count fixed
before torch starts, and appends one JSON line to `--out`, so a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from child_runs import (already_run, end_sweep, finished_rows, head_predictions, run_child, seed_list, train_command,
                        train_env)

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_shapes.yaml"
# The whole 448x336 photo at full size: 16 x 12 = 192 tokens; 8 photos a batch.
WHOLE_PHOTOS = ["model.min_pixels=3136", "model.max_pixels=150528", "model.max_vision_tokens=192",
                "model.max_vision_tokens_per_batch=1536"]


def score(checkpoint: Path, val: Path) -> dict:
    """One-pass head AP50 per label and class-agnostic of a checkpoint on a validation file."""
    from bbuvl.eval.coco_metrics import coco_evaluate

    records, results, seconds = head_predictions(checkpoint, val)
    result = coco_evaluate(records, [[d.to_dict() for d in r.objects] for r in results])
    return {"AP50": result.summary["AP50"], "AP50_agnostic": result.agnostic["AP50"], "AP": result.summary["AP"],
            "tokens": sum(r.vision_tokens for r in results) / len(results), "s_per_photo": round(seconds, 3)}


def one_run(seed: int, threads: int, steps: int, n_train: int, n_val: int, every: int, overrides: list[str],
            size: tuple[int, int] = (448, 336), procs: int = 1) -> dict:
    """Train the whole-photo recipe once and score one pass at every `every` steps (runs in the child).

    procs > 1 trains as that many one-thread processes of one DDP run (the step's batch shared among them, as
    `make demo` trains); scoring stays in this process.
    """
    import torch

    torch.set_num_threads(threads)
    from bbuvl.config import load_config
    from bbuvl.data.schema import read_records
    from bbuvl.eval.prior import best_constant_box
    from bbuvl.synthetic.shapes import synthesize_shapes
    from bbuvl.tiny.model import build_tiny_model
    from bbuvl.train.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize_shapes(root / "data", n_train, n_val, seed=seed, size=size, min_objects=1, max_objects=3,
                          object_px=(10, 24), num_teachers=0)
        model_dir = build_tiny_model(root / "tiny", seed=seed)
        save = every if every else 100000
        recipe = [
            f"model.path={model_dir}", f"data.train={root / 'data' / 'train.jsonl'}", "data.val=null",
            f"training.output_dir={root / 'run'}", f"training.max_steps={steps}", f"training.seed={seed}",
            "training.logging_steps=50", f"training.save_steps={save}", "training.save_total_limit=100",
            "training.eval_steps=100000", "monitor.enabled=false", *WHOLE_PHOTOS, *overrides]
        cfg = load_config(CONFIG, recipe)
        start = time.perf_counter()
        if procs > 1:
            batch = cfg.training.per_device_batch_size
            if batch % procs:
                raise ValueError(f"a batch of {batch} does not split over {procs} processes")
            subprocess.run(train_command(procs) + ["train", str(CONFIG), *recipe,
                                                   f"training.per_device_batch_size={batch // procs}"],
                           check=True, env=train_env(procs, threads), stdout=subprocess.DEVNULL)
            final = root / "run" / "final"
        else:
            final = train(cfg, progress=False)["final"]
        trained = time.perf_counter() - start
        val = root / "data" / "val.jsonl"
        row: dict = {"seed": seed, "threads": threads, "procs": procs, "steps": steps, "train": n_train, "val": n_val,
                     "size": f"{size[0]}x{size[1]}", "overrides": overrides, "train_s": round(trained, 1)}
        curve = {}
        for ckpt in sorted((root / "run").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
            curve[int(ckpt.name.split("-")[1])] = score(ckpt, val)
        curve[steps] = score(final, val)
        row["curve"] = curve
        row["final"] = curve[steps]
        prior = best_constant_box(read_records(val))
        row["prior_ap50"], row["prior_ap50_agnostic"] = prior.ap50, prior.ap50_agnostic
    return row


def main() -> None:
    """Run every seed not yet in `--out` for these overrides, one subprocess each, then print the file's rows."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="100,200")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--procs", type=int, default=1, help="train as this many one-thread processes (DDP), as `make demo` does")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--val", type=int, default=40)
    ap.add_argument("--size", default="448x336", help="photo size WxH (the shapes stay 10-24 px)")
    ap.add_argument("--eval-every", type=int, default=100, help="also score checkpoints every N steps (0: final only)")
    ap.add_argument("--out", type=Path, default=Path("runs/small_shapes_one_pass.jsonl"))
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="config overrides (key=value) for the recipe")
    args = ap.parse_args()
    if args.child is not None:
        size = tuple(int(v) for v in args.size.split("x"))
        print(json.dumps(one_run(args.child, args.threads, args.steps, args.train, args.val, args.eval_every,
                                 args.overrides, size, args.procs)))
        return
    done = finished_rows(args.out)
    for seed in seed_list(args.seeds):
        if already_run(done, {"size": "448x336", "procs": 1}, seed=seed, threads=args.threads, steps=args.steps, train=args.train,
                       size=args.size, overrides=args.overrides, procs=args.procs):
            continue
        cmd = [sys.executable, __file__, "--child", str(seed), "--threads", str(args.threads), "--steps", str(args.steps),
               "--train", str(args.train), "--val", str(args.val), "--eval-every", str(args.eval_every), "--size", args.size,
               "--procs", str(args.procs), *args.overrides]
        row = run_child(cmd, args.threads, args.out, f"seed {seed}")
        if row is None:
            continue
        done.append(row)
        curve = ", ".join(f"{k}: {v['AP50']:.3f} ({v['AP50_agnostic']:.3f})" for k, v in row["curve"].items())
        layout = f"{args.procs} processes" if args.procs > 1 else f"{args.threads} thread(s)"
        print(f"seed {seed} {' '.join(args.overrides) or '(recipe)'}, {layout}: {curve}; constant box {row['prior_ap50']:.3f} "
              f"({row['prior_ap50_agnostic']:.3f}); trained in {row['train_s']:.0f} s", flush=True)
    end_sweep()


if __name__ == "__main__":
    main()
