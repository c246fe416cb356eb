"""Refit a finished checkpoint's caption layers with other refit settings, one new checkpoint per setting.

    .venv/bin/python bench/caption_refit.py --checkpoint demo_out/bbu/run/final --train demo_out/bbu/data/train.jsonl \\
        --out runs/refit --balance 0,0.5,1 --steps 400 --schedule cosine,constant

Each setting writes `<out>/balance<B>_steps<S>_<schedule>` (train/caption_refit_checkpoint.py): the checkpoint's model with its
captions refit again on the training photos, so that settings are compared on one trained model with no training
run between them. Score the folders with bench/inspection.py; docs/faults_learning.md ("Balanced refit") has the
measured runs, and "The refit's learning rate" the schedules, refit from a run's step-900 checkpoint (the weights
before the run's own refit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> list[Path]:
    """Parse the arguments and refit once per balance and schedule; returns the new checkpoint folders."""
    from bench_files import check_inputs

    from bbuvl.config import CaptionRefitConfig
    from bbuvl.train.caption_refit_checkpoint import refit_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True, help="a finished checkpoint with a detection head")
    ap.add_argument("--train", type=Path, required=True, help="the training JSONL whose photos the refit reads")
    ap.add_argument("--out", type=Path, required=True, help="folder for the new checkpoints")
    ap.add_argument("--balance", default="0", help="comma-separated draw balances, each in [0, 1]")
    ap.add_argument("--steps", type=int, default=400, help="refit steps")
    ap.add_argument("--batch-size", type=int, default=64, help="covered objects a step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--schedule", default="cosine", help="comma-separated learning-rate schedules: cosine, constant")
    ap.add_argument("--background", default="0", help="comma-separated shares of each batch taught to name nothing, "
                    "each in [0, 1)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the refit's draws (a run's refit uses its training seed)")
    ap.add_argument("--photos", type=Path, default=None,
                    help="a JSONL of more photos the refit reads after --train's (detection.caption_refit.photos)")
    ap.add_argument("--pixel-context", type=float, default=0.0,
                    help="above 1: add the pixel level's context (the box widened this many times) and fit it too")
    args = ap.parse_args(argv)
    try:
        check_inputs([args.checkpoint], [args.train, args.photos])
    except (OSError, ValueError) as e:
        ap.error(str(e))
    folders = []
    settings = [(float(b), s, float(g)) for b in args.balance.split(",") for s in args.schedule.split(",")
                for g in args.background.split(",")]
    for balance, schedule, background in settings:
        cfg = CaptionRefitConfig(steps=args.steps, balance=balance, batch_size=args.batch_size, lr=args.lr,
                                 schedule=schedule, background=background,
                                 photos=None if args.photos is None else str(args.photos))
        out = args.out / (f"balance{balance:g}_steps{args.steps}_{schedule}"
                          + (f"_background{background:g}" if background else "")
                          + (f"_context{args.pixel_context:g}" if args.pixel_context else "")
                          + ("_photos" if args.photos else ""))
        result = refit_checkpoint(args.checkpoint, args.train, out, cfg, seed=args.seed, overwrite=True,
                                  pixel_context=args.pixel_context)
        print(f"{out}: {result.pairs} objects covered ({result.uncovered} not), {result.background} queries covering "
              f"nothing, loss {result.first_loss:.4f} -> {result.last_loss:.4f}, {result.seconds:.0f} s", flush=True)
        folders.append(out)
    return folders


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
