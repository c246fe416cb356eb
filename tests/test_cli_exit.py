"""The CLI's exit: its garbage collected once, then what survives spared from the interpreter's teardown collections."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).parents[1] / "src")

# Registered before the CLI's own handler, so it runs after it: what the teardown is left with.
SCRIPT = """
import atexit, gc, sys
atexit.register(lambda: print("frozen", gc.get_freeze_count(), flush=True))


class Cycle:
    # garbage only a collection finds, whose finalizer writes what a command would lose (an output's last buffer)
    def __init__(self, path):
        self.me, self.path = self, path

    def __del__(self):
        with open(self.path, "w") as fh:
            fh.write("written")


path, sys.argv = sys.argv[1], ["bbuvl", "--help"]
try:
    {run}
finally:
    gc.disable()  # made at the very end: only a collection at exit finds it
    Cycle(path)
"""


@pytest.mark.parametrize("run", ["import runpy; runpy.run_module('bbuvl.cli', run_name='__main__')",
                                 "from bbuvl.entry import main; main()"], ids=["python -m bbuvl.cli", "bbuvl"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_cli_collects_its_garbage_once_at_exit_then_freezes_what_survives(tmp_path, run):
    written = tmp_path / "finalizer.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(run=run), str(written)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [frozen] = [int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("frozen ")]
    # before: 0, and the teardown walked every object the imports left, pass after pass
    assert frozen > 10_000, done.stdout
    # the garbage left at the very end was still collected, its finalizer run, as at any exit (frozen, it would not be)
    assert written.read_text(encoding="utf-8") == "written"
