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

from bbuvl.config import load_config
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.infer.batch import PredictJob, run_predictions
from bbuvl.infer.predictor import Predictor
from bbuvl.synthetic.dataset import synthesize
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import train


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
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "data", 8, 2, seed=5, size=(448, 336), num_teachers=2)
        build_tiny_model(tmp / "model")
        cfg = load_config(None, [
            f"model.path={tmp / 'model'}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
            f"data.train={tmp / 'data/train.jsonl'}", "data.val=null", f"data.teachers={tmp / 'data/teachers.jsonl'}",
            f"training.output_dir={tmp / 'run'}", "training.max_steps=1", "training.per_device_batch_size=2",
            "training.bf16=false", "training.gradient_checkpointing=false", "training.use_cpu=true",
            "inference.max_new_tokens=64",
        ])
        ckpt = train(cfg, progress=False)["final"]
        sources = [resolve_image(tmp / "data/train.jsonl", r.image) for r in read_records(tmp / "data/train.jsonl")]
        images = tmp / "many"
        images.mkdir()
        paths = []
        for i in range(args.n):
            dst = images / f"{i:05d}.jpg"
            shutil.copyfile(sources[i % len(sources)], dst)
            paths.append(str(dst))
        predictor = Predictor.from_checkpoint(ckpt, device="cpu")
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
