"""Training with the samples kept between epochs (`data.sample_cache_mb`) against encoding every draw, side by side.

    .venv/bin/python bench/sample_cache.py [--rounds 2] [--stages shapes,bbu] [--procs 2]

Each stage trains its demo config (configs/demo_shapes.yaml, configs/demo.yaml) as `scripts/demo.sh` does (two
one-thread processes on two cores), over as many epochs as the demo's run of it makes (stage A: 1,250 steps of 8 over
1,000 photos, 10 epochs; stage B: 900 of 4 over 1,200, 3), on photos rendered like its own, both ways alternately so
that the machine's noise hits both alike. Prints the seconds a step (the trainer's runtime over its steps, process start
and model loading excluded), their ratio, and the share of draws the first process read from memory. The weights are
the same either way (tests/train/test_sample_cache.py).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from child_runs import check_stages, timed_training

from bbuvl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# stage: (config, synth arguments, steps, epochs as the demo trains it)
STAGES = {
    "shapes": ("configs/demo_shapes.yaml", ["--scene", "shapes", "--size", "224x224", "--min-objects", "1",
                                           "--max-objects", "1"], 120, 10),
    "bbu": ("configs/demo.yaml", ["--framing", "mixed", "--wide-share", "0.1", "--tile-share", "0.1", "--size", "448x336",
                                  "--workers", "2"], 60, 3),
}
HITS = re.compile(r"(\d+) of (\d+) draws read from memory")


def run(config: str, batch: int, procs: int, data: Path, model: Path, out: Path, steps: int,
        cache_mb: float) -> tuple[float, float | None]:
    """Seconds a step, and the first process's share of draws read from memory (None without the cache)."""
    overrides = ["data.num_workers=0", f"data.sample_cache_mb={cache_mb:g}", "detection.caption_refit.steps=1"]
    seconds, printed = timed_training(config, batch, procs, data, model, out, steps, overrides, ROOT)
    hit = HITS.search(printed)
    return seconds, (int(hit[1]) / int(hit[2]) if hit else None)


def main() -> None:
    """Build each stage's photos and tiny model once, then time both ways alternately and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--stages", default="shapes,bbu")
    ap.add_argument("--cache-mb", type=float, default=4096)
    args = ap.parse_args()
    check_stages(ap, args.stages, STAGES)
    if args.rounds < 1 or args.procs < 1 or not args.cache_mb > 0:  # a mean of no rounds; no cache to compare with
        ap.error(f"--rounds and --procs must be at least 1 and --cache-mb above 0, got {args.rounds}, {args.procs} and "
                 f"{args.cache_mb:g}")
    bbuvl = [sys.executable, "-m", "bbuvl.cli"]
    print(f"{'stage':<7} {'round':>5} {'encoded, s/step':>16} {'kept, s/step':>13} {'speed-up':>9} {'draws from memory':>18}")
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages.split(","):
            config, synth, steps, epochs = STAGES[stage]
            batch = load_config(ROOT / config).training.per_device_batch_size
            root = Path(tmp) / stage
            photos = batch * steps // epochs
            subprocess.run(bbuvl + ["data", "synth", str(root / "data"), *synth, "--n-train", str(photos), "--n-val", "2",
                                    "--seed", "0"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            subprocess.run(bbuvl + ["model", "tiny", str(root / "model")], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            ratios = []
            for r in range(args.rounds):
                times, share = {}, None
                for cache in ((0.0, args.cache_mb) if r % 2 == 0 else (args.cache_mb, 0.0)):
                    times[cache], hit = run(config, batch, args.procs, root / "data", root / "model",
                                            root / f"run{cache:g}", steps, cache)
                    share = hit if hit is not None else share
                ratios.append(times[0.0] / times[args.cache_mb])
                print(f"{stage:<7} {r + 1:>5} {times[0.0]:>16.3f} {times[args.cache_mb]:>13.3f} {ratios[-1]:>8.2f}x "
                      f"{share:>18.2f}")
            print(f"{stage:<7} {'all':>5} {'':>16} {'':>13} {sum(ratios) / len(ratios):>8.2f}x (mean; {photos} photos, "
                  f"{steps} steps of {batch}, {epochs} epochs)")


if __name__ == "__main__":
    main()
