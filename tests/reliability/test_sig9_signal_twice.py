"""Ctrl-C pressed twice, or a supervisor sending SIGTERM again, while a stopped command cleans up: the second signal
was raised again inside the first's cleanup and cut it short, so `data synth` left a folder of 300 photos without
train.jsonl, behind a line saying what it left half-done was removed. Now a command stops once, and its cleanup ends."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.reliability.test_cli7_signals import long_synth


@pytest.mark.parametrize("signum, status, said", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                   (signal.SIGINT, 130, "interrupted (Ctrl-C)")])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_signal_repeated_while_the_command_cleans_up_leaves_nothing_half_removed(tmp_path, signum, status, said):
    out = tmp_path / "synth"
    child = long_synth(out, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        # enough photos that removing them takes a while: the repeats land inside that cleanup
        while not (out / "images").is_dir() or len(os.listdir(out / "images")) < 100:
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.02)
        # again and again, as a held Ctrl-C or an impatient supervisor does, until the cleanup is seen to be over
        while out.exists() and child.poll() is None and time.monotonic() < deadline:
            child.send_signal(signum)
            time.sleep(0.005)
        err = child.stderr.read()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == status, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and said in lines[0], err
    assert not out.exists(), f"{len(list(out.rglob('*')))} files left: {sorted(p.name for p in out.iterdir())}"
