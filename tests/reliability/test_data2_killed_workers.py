"""`data convert` and `data synth` with worker processes (convert's default: one per core), killed with `kill -9`,
then run again on the same folder. The forked workers hold the command's output locks: they outlived it, asleep on
its pipes for ever, and every re-run was refused as 'another `bbuvl data convert` (pid N) is writing it', N a process
that no longer existed. Now they end with it, and the re-run writes the folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli.data import app
from bbuvl.synthetic.dataset import synthesize

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a process's children in /proc")


def children(pid: int) -> list[int]:
    """The processes `pid` started that are still alive."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped by its new parent, has let go of its files)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def start_and_kill(args: list[str]) -> list[int]:
    """Run `bbuvl data ARGS`, kill it with SIGKILL once its workers run, and return the workers' ids."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "bbuvl.cli", "data", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline, workers = time.monotonic() + 120, []
    while time.monotonic() < deadline and proc.poll() is None and len(workers) < 2:
        workers = children(proc.pid)
        time.sleep(0.02)
    if len(workers) < 2:
        proc.kill()
        proc.wait()
        pytest.fail(f"bbuvl data {' '.join(args)} started no workers (exit {proc.returncode})")
    time.sleep(0.3)  # in the middle of their photos
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return workers


@pytest.mark.parametrize("command", ["convert", "synth"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_killed_command_leaves_no_worker_behind_and_its_rerun_writes_the_folder(tmp_path: Path, command: str):
    out = tmp_path / "out [1]"
    if command == "convert":
        synthesize(tmp_path / "export", 48, 0, seed=1, size=(640, 480), fmt="vendor")
        args = ["convert", str(tmp_path / "export"), str(out), "--workers", "2", "--teachers", "1"]
        again = args
    else:
        args = ["synth", str(out), "--n-train", "300", "--n-val", "0", "--teachers", "1", "--workers", "2"]
        again = ["synth", str(out), "--n-train", "4", "--n-val", "1", "--size", "160x120", "--workers", "2"]
    workers = start_and_kill(args)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(map(alive, workers)):
            time.sleep(0.05)
        assert not [w for w in workers if alive(w)], "workers of the killed command still run"
        result = CliRunner().invoke(app, again)
        assert result.exit_code == 0, result.output
        assert (out / "train.jsonl").is_file()
    finally:
        for w in workers:  # before the fix they ran on, holding the locks: end them here, not with the test run
            if alive(w):
                os.kill(w, signal.SIGKILL)
