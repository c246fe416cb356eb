"""One process with N threads against N processes of one thread (DDP over gloo), side by side, on the demo's stages.

    .venv/bin/python bench/train_processes.py [--steps 40] [--rounds 2] [--stages shapes,bbu]

The tiny models are small enough that a training step is mostly many small tensor operations, which a second
thread speeds up little; a second process does half the batch on its own core. Each stage trains its demo config
(configs/demo_shapes.yaml, configs/demo.yaml) for `--steps` optimizer steps of the same global batch in both
layouts, alternating them `--rounds` times so the machine's noise hits both alike, and prints the seconds a
step (the trainer's own runtime over the steps, process start and model loading excluded) and their ratio.
`scripts/demo.sh` trains with the processes when the machine has two cores or more.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from child_runs import check_stages, timed_training

from bbuvl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# stage: (config, synth arguments); the config's batch is each step's, split over the processes
STAGES = {
    "shapes": ("configs/demo_shapes.yaml", ["--scene", "shapes", "--size", "224x224", "--min-objects", "1",
                                           "--max-objects", "1"]),
    "bbu": ("configs/demo.yaml", ["--framing", "closeup", "--size", "448x336"]),
}


def seconds_per_step(config: str, batch: int, procs: int, data: Path, model: Path, out: Path, steps: int) -> float:
    """Train `steps` steps of `batch` photos as `procs` one-thread processes (or one process with 2 threads)."""
    return timed_training(config, batch, procs, data, model, out, steps, ["monitor.enabled=false"], ROOT)[0]


def main() -> None:
    """Build each stage's data and tiny model once, then time both layouts alternately and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--stages", default="shapes,bbu")
    args = ap.parse_args()
    check_stages(ap, args.stages, STAGES)
    if args.steps < 1 or args.rounds < 1 or args.procs < 2:  # one process against one would compare a layout with itself
        ap.error(f"--steps and --rounds must be at least 1 and --procs at least 2, got {args.steps}, {args.rounds} and "
                 f"{args.procs}")
    bbuvl = [sys.executable, "-m", "bbuvl.cli"]
    print(f"{'stage':<7} {'round':>5} {'1 process, s/step':>18} {f'{args.procs} processes, s/step':>20} {'speed-up':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages.split(","):
            config, synth = STAGES[stage]
            batch = load_config(ROOT / config).training.per_device_batch_size
            root = Path(tmp) / stage
            subprocess.run(bbuvl + ["data", "synth", str(root / "data"), *synth, "--n-train", str(batch * args.steps),
                                    "--n-val", "2", "--seed", "0"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            subprocess.run(bbuvl + ["model", "tiny", str(root / "model")], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            ratios = []
            for r in range(args.rounds):
                times = {}
                for procs in ((1, args.procs) if r % 2 == 0 else (args.procs, 1)):
                    times[procs] = seconds_per_step(config, batch, procs, root / "data", root / "model", root / f"run{procs}",
                                                    args.steps)
                ratios.append(times[1] / times[args.procs])
                print(f"{stage:<7} {r + 1:>5} {times[1]:>18.3f} {times[args.procs]:>20.3f} {ratios[-1]:>8.2f}x")
            print(f"{stage:<7} {'all':>5} {'':>18} {'':>20} {sum(ratios) / len(ratios):>8.2f}x (mean)")


if __name__ == "__main__":
    main()
