"""One training run per child process, its thread count fixed before torch starts: the benches measuring spread
over seeds (guard_spread.py, small_shapes_one_pass.py) run each seed this way and append its JSON row to a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def seed_list(text: str) -> list[int]:
    """`"0-7"` or `"0,3,9"` -> a list of seeds."""
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def run_child(cmd: list[str], threads: int, out: Path, what: str) -> dict | None:
    """Run `cmd` with `threads` OpenMP/MKL threads; its last stdout line (JSON) is appended to `out` and returned.

    A failed child prints its stderr's tail naming `what` and returns None, so one bad seed does not end a sweep.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{what}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    row = json.loads(done.stdout.strip().splitlines()[-1])
    with out.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    return row
