"""Resident memory while predicting 1,000 images: it must stay flat (< 50 MB growth after warm-up).

    .venv/bin/python bench/predict_memory.py [--n 1000] [--mode head|generate] [--batch 4]

Builds a tiny model, trains it for one step to get a real checkpoint, writes N distinct image files (copies of
a few synthetic photos), then runs the streaming batch prediction over them, sampling RSS after every batch.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bbuvl.infer.batch import PredictJob, run_predictions
from bbuvl.infer.predictor import Predictor
from tiny_checkpoint import tiny_checkpoint


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    """Run the benchmark and print the RSS curve and the growth after warm-up."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--mode", default="head", choices=["head", "generate"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=100, help="images before the baseline is taken")
    args = ap.parse_args()
    if not 0 <= args.warmup < args.n or args.batch < 1:  # the baseline is the first sample at or after the warm-up
        ap.error(f"--warmup must be below --n and --batch at least 1, got --warmup {args.warmup}, --n {args.n}, "
                 f"--batch {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt, sources = tiny_checkpoint(tmp)
        images = tmp / "many"
        images.mkdir()
        paths = []
        for i in range(args.n):
            dst = images / f"{i:05d}.jpg"
            shutil.copyfile(sources[i % len(sources)], dst)
            paths.append(str(dst))
        predictor = Predictor.load(ckpt, device="cpu")
        curve: list[tuple[int, float]] = []
        run_predictions(PredictJob(paths, tmp / "pred.jsonl", args.mode, args.batch),
                        lambda chunk: predictor.predict_lines(chunk, args.mode),
                        on_progress=lambda done, total: curve.append((done, rss_mb())))
        lines = sum(1 for _ in (tmp / "pred.jsonl").open())
    base = next(mb for done, mb in curve if done >= args.warmup)
    print(f"mode {args.mode}, batch {args.batch}, {lines} lines written")
    print("images  rss_mb")
    for done, mb in curve:
        if done % 100 < args.batch or done == curve[-1][0]:
            print(f"{done:6d}  {mb:7.1f}")
    growth = curve[-1][1] - base
    print(f"growth after {args.warmup} warm-up images: {growth:+.1f} MB (max {max(m for _, m in curve) - base:+.1f} MB)")
    print("PASS" if growth < 50 else "FAIL", "(< 50 MB)")


if __name__ == "__main__":
    main()
