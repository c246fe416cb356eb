"""The spread of the stage-A recipe over seeds and thread counts: what a learnability bar may demand.

    .venv/bin/python bench/guard_spread.py --seeds 0-7 --threads 1,2 --steps 550 --out runs/guard_spread.jsonl
    .venv/bin/python bench/guard_spread.py --seeds 100-107 --threads 2 --steps 1000 --train 1000 --val 50 --out runs/demo_spread.jsonl
    .venv/bin/python bench/guard_spread.py --seeds 0,1 --threads 1 --out runs/ntl.jsonl loss.number_token=1.0

Training is deterministic per machine, seed and thread count, but not across machines: one commit gave head
AP50 0.594 on one machine and passed a 0.8 bar on another. A bar is only safe if every run of a spread clears
it, so this trains `configs/demo_shapes.yaml` (stage A of `make demo`, and the guard in
`tests/test_learnability.py`) once per (seed, thread count): the seed sets the photos, the tiny model's
initialisation and the training order. Each run is a subprocess with its thread count fixed before torch
starts, and appends one JSON line to `--out`, so a killed sweep resumes where it stopped. The summary prints
min / median / max per (steps, threads) and the best constant box beside them (docs/localisation.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from child_runs import already_run, end_sweep, finished_rows, run_child, seed_list

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_shapes.yaml"
MODES = ("head", "name", "generate")


def one_run(seed: int, threads: int, steps: int, n_train: int, n_val: int, overrides: list[str]) -> dict:
    """Train the stage-A recipe once and score every mode on its validation photos (runs in the child)."""
    import torch

    torch.set_num_threads(threads)
    from bbuvl.config import load_config
    from bbuvl.data.boxes import box_iou
    from bbuvl.data.schema import read_records, resolve_image
    from bbuvl.eval.coco_metrics import coco_evaluate
    from bbuvl.eval.prior import best_constant_box
    from bbuvl.infer.predictor import Predictor
    from bbuvl.synthetic.shapes import synthesize_shapes
    from bbuvl.tiny.model import build_tiny_model
    from bbuvl.train.trainer import train

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize_shapes(root / "data", n_train, n_val, seed=seed, size=(224, 224), min_objects=1, max_objects=1)
        model_dir = build_tiny_model(root / "tiny", seed=seed)
        cfg = load_config(CONFIG, [
            f"model.path={model_dir}", f"data.train={root / 'data' / 'train.jsonl'}", "data.val=null",
            f"training.output_dir={root / 'run'}", f"training.max_steps={steps}", f"training.seed={seed}",
            "training.logging_steps=50", "training.save_steps=100000", "training.eval_steps=100000",
            "monitor.enabled=false", *overrides])
        final = train(cfg, progress=False)["final"]
        trained = time.perf_counter() - start
        val = root / "data" / "val.jsonl"
        records = read_records(val)
        paths = [resolve_image(val, r.image) for r in records]
        predictor = Predictor.load(final, device="cpu")
        row: dict = {"seed": seed, "threads": threads, "steps": steps, "train": n_train, "val": n_val,
                     "overrides": overrides, "train_s": round(trained, 1)}
        for mode in MODES:
            preds = [[d.to_dict() for d in objs] for objs in predictor.predict_detection(paths, mode=mode)]
            result = coco_evaluate(records, preds)
            # "acc": the top-scored box names the photo's one shape right.
            top = [max(p, key=lambda d: d["score"]) if p else None for p in preds]
            acc = sum(t is not None and t["label"] == r.objects[0].desc for t, r in zip(top, records)) / len(records)
            hit = sum(t is not None and box_iou(t["bbox_2d"], r.objects[0].bbox_2d) >= 0.5
                      for t, r in zip(top, records)) / len(records)
            # How far the top box's corners are from the shape's, in stored pixels (photos with a box).
            errors = [abs(a - b) for t, r in zip(top, records) if t is not None
                      for a, b in zip(t["bbox_2d"], r.objects[0].bbox_2d)]
            # The guard's other checks: best-overlapping box centres follow the truth's on both axes, and every
            # generate answer parses with vocabulary labels.
            truth = torch.tensor([[(o.bbox_2d[0] + o.bbox_2d[2]) / 2, (o.bbox_2d[1] + o.bbox_2d[3]) / 2]
                                  for r in records for o in r.objects])
            best = [max(p, key=lambda d: box_iou(d["bbox_2d"], o.bbox_2d))["bbox_2d"] if p else [0, 0, 0, 0]
                    for p, r in zip(preds, records) for o in r.objects]
            found = torch.tensor([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in best])
            corr = [float(torch.corrcoef(torch.stack([truth[:, a], found[:, a]]))[0, 1]) for a in (0, 1)]
            vocabulary = {o.desc for r in records for o in r.objects}
            answered = sum(bool(p) and all(d["label"] in vocabulary for d in p) for p in preds) / len(preds)
            row[mode] = {"AP50": result.summary["AP50"], "AP": result.summary["AP"], "AP75": result.summary["AP75"],
                         "AP50_agnostic": result.agnostic["AP50"], "top_label_acc": round(acc, 3),
                         "top_iou50": round(hit, 3), "centre_corr": [round(c, 3) for c in corr],
                         "top_corner_error_px": round(statistics.fmean(errors), 1) if errors else None,
                         "answered_in_vocabulary": round(answered, 3)}
        prior = best_constant_box(records)
        row["prior_ap50"] = prior.ap50
        # The constant box's corner error, the floor a box that ignores the photo reaches.
        row["prior_corner_error_px"] = round(statistics.fmean(
            abs(rel * side - truth) for r in records for rel, side, truth in
            zip(prior.box, (r.width, r.height) * 2, r.objects[0].bbox_2d)), 1)
    row["total_s"] = round(time.perf_counter() - start, 1)
    return row


def summarise(rows: list[dict]) -> None:
    """Print min / median / max AP50 per (steps, overrides, threads) group."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["steps"], r["train"], " ".join(r["overrides"]), r["threads"]), []).append(r)
    print(f"{'steps':>5} {'train':>5} {'thr':>3} {'n':>2}  {'head AP50 min/med/max':<24}{'name AP50 min/med/max':<24}"
          f"{'generate':<10}{'prior':<6} overrides")
    for (steps, n_train, over, threads), rs in sorted(groups.items()):
        def span(mode: str) -> str:
            v = [r[mode]["AP50"] for r in rs]
            return f"{min(v):.3f}/{statistics.median(v):.3f}/{max(v):.3f}"
        prior = max(r["prior_ap50"] for r in rs)
        print(f"{steps:>5} {n_train:>5} {threads:>3} {len(rs):>2}  {span('head'):<24}{span('name'):<24}"
              f"{max(r['generate']['AP50'] for r in rs):<10.3f}{prior:<6.3f} {over}")
        print("        head per seed: " + ", ".join(f"{r['seed']}:{r['head']['AP50']:.3f}" for r in sorted(rs, key=lambda r: r["seed"])))
        print("        name per seed: " + ", ".join(f"{r['seed']}:{r['name']['AP50']:.3f}" for r in sorted(rs, key=lambda r: r["seed"])))
        # Generate mode: AP50, then whether its boxes follow the shapes at all (centre correlation x / y with the
        # truth) and how often its top box overlaps the shape at IoU >= 0.5 (docs/number_token_loss.md).
        print("        generate per seed (AP50 | centre corr x/y | top IoU>=0.5 | corner error px, constant box's): " + ", ".join(
            f"{r['seed']}:{r['generate']['AP50']:.3f} | {r['generate']['centre_corr'][0]:.2f}/{r['generate']['centre_corr'][1]:.2f}"
            f" | {r['generate']['top_iou50']:.2f} | {r['generate'].get('top_corner_error_px')}, {r.get('prior_corner_error_px')}"
            for r in sorted(rs, key=lambda r: r["seed"])))


def main() -> None:
    """Run every (seed, threads) not yet in `--out`, one subprocess each, then summarise the file."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-7")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--steps", type=int, default=550)
    ap.add_argument("--train", type=int, default=600, help="training photos (the guard's 600; the demo's 1000)")
    ap.add_argument("--val", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("runs/guard_spread.jsonl"))
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="extra config overrides (key=value) for the recipe")
    args = ap.parse_args()
    if args.child:
        seed, threads = (int(v) for v in args.child.split(","))
        print(json.dumps(one_run(seed, threads, args.steps, args.train, args.val, args.overrides)))
        return
    done = finished_rows(args.out)
    if not args.summary_only:
        for threads in (int(v) for v in args.threads.split(",")):
            for seed in seed_list(args.seeds):
                if already_run(done, seed=seed, threads=threads, steps=args.steps, train=args.train,
                               overrides=args.overrides):
                    continue
                cmd = [sys.executable, __file__, "--child", f"{seed},{threads}", "--steps", str(args.steps),
                       "--train", str(args.train), "--val", str(args.val), *args.overrides]
                row = run_child(cmd, threads, args.out, f"seed {seed} threads {threads}")
                if row is None:
                    continue
                done.append(row)
                print(f"seed {seed} threads {threads} steps {args.steps}: head {row['head']['AP50']:.3f} "
                      f"name {row['name']['AP50']:.3f} generate {row['generate']['AP50']:.3f} ({row['total_s']:.0f} s)",
                      flush=True)
    summarise(done)
    end_sweep()


if __name__ == "__main__":
    main()
