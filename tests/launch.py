"""The command line of a training run as one process or as several DDP processes over gloo (tests that compare them)."""

from __future__ import annotations

import sys


def launch_command(processes: int, port: int, cli: tuple[str, ...] = ("-m", "bbuvl.cli")) -> list[str]:
    """`python CLI` for one process; `torch.distributed.run` with `processes` of it on `port` otherwise."""
    if processes == 1:
        return [sys.executable, *cli]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-port", str(port),
            *cli]
