"""The command line of a training run as one process or as several DDP processes over gloo (tests that compare them)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ZERO2 = REPO / "configs" / "deepspeed" / "zero2.json"
# `bbuvl` for DeepSpeed on CPU-only machines (the file says why accelerate needs it there).
DEEPSPEED_CPU_CLI = (str(REPO / "tests" / "train" / "deepspeed_cpu_launch.py"),)


def launch_command(processes: int, port: int, cli: tuple[str, ...] = ("-m", "bbuvl.cli")) -> list[str]:
    """`python CLI` for one process; `torch.distributed.run` with `processes` of it on `port` otherwise."""
    if processes == 1:
        return [sys.executable, *cli]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-port", str(port),
            *cli]
