"""A SIGTERM to the process group of `data synth --workers N` (`timeout`, a terminal's job control, systemd's stop)
ends its pool's processes with it. Python 3.11's pool then set an error on the photos its map() had cancelled, and its
thread died printing 'InvalidStateError: CANCELLED' after bbuvl's one line, in 7 of 8 runs (this test caught it in 5
of 6)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

CHILD = "import sys, bbuvl.entry; sys.argv = ['bbuvl', *sys.argv[1:]]; bbuvl.entry.main()"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_group_sigterm_ends_data_synth_with_workers_with_only_its_line_and_its_folder_removed(tmp_path):
    out = tmp_path / "synth"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "data", "synth", str(out), "--scene", "shapes", "--n-train", "1000",
         "--n-val", "1", "--size", "96x96", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + 60
        while not (out / "images").is_dir() or len(os.listdir(out / "images")) < 50:
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()
            time.sleep(0.02)
        os.killpg(child.pid, signal.SIGTERM)  # the command and its workers, as `timeout` and systemd send it
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 143, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "terminated (SIGTERM)" in lines[0], err
    assert not out.exists()
