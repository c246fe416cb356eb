"""The benches whose rows a child process runs, each row run here at its smallest size in this process: a row
builds its run from a shipped config and its own overrides, so a check added to the run's inputs since the bench
was written fails here rather than at the end of a user's sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench_runner import run_bench_in_process

BENCH = Path(__file__).resolve().parents[1] / "bench"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_grounding_memory_row_runs_at_a_batch_other_than_the_configs(tmp_path):
    from bbuvl.synthetic.shapes import synthesize_shapes
    from bbuvl.tiny.model import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    synthesize_shapes(tmp_path / "data", 2, 0, seed=3, size=(112, 112), min_objects=1, max_objects=1)
    # configs/demo_shapes.yaml trains batches of 8; the row is a batch of 2 with a vision budget for 2.
    code, out, err = run_bench_in_process(BENCH / "grounding_memory.py", [
        "--arm", "rows", "--model", str(model), "--data", str(tmp_path / "data"), "--size", "112", "--batch", "2",
        "--steps", "1"])
    assert code == 0, err[-3000:]
    row = json.loads(out.strip().splitlines()[-1])
    assert row["vision_tokens"] == 16 and row["length"] > 16 and row["saved_mb"] > 0


def gone(pid: int) -> bool:
    """Whether a process has ended: no longer there, or a zombie its new parent has not reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_sweeps_child_dies_with_the_sweep_killed_with_9(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    # The sweep's side: run_child on a child that would run for a minute, writing its pid first.
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    sweep = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); from pathlib import Path; from child_runs import run_child; "
             f"run_child([sys.executable, '-c', {child!r}], 1, Path({str(tmp_path / 'rows.jsonl')!r}), 'seed 0')")
    parent = subprocess.Popen([sys.executable, "-c", sweep])
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline and parent.poll() is None, "the child never started"
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while not gone(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("the child outlived the sweep killed with -9")
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_sweep_whose_child_failed_exits_1_naming_it_and_keeps_the_others_rows(tmp_path):
    import subprocess
    import sys

    ok = "import json; print(json.dumps({'seed': 1}))"
    sweep = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); from pathlib import Path; "
             "from child_runs import end_sweep, run_child; "
             f"out = Path({str(tmp_path / 'rows.jsonl')!r}); "
             "run_child([sys.executable, '-c', 'raise SystemExit(3)'], 1, out, 'seed 0'); "
             f"run_child([sys.executable, '-c', {ok!r}], 1, out, 'seed 1'); end_sweep()")
    done = subprocess.run([sys.executable, "-c", sweep], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "1 run(s) of this sweep failed: seed 0" in done.stderr
    assert (tmp_path / "rows.jsonl").read_text(encoding="utf-8").splitlines() == ['{"seed": 1}']
