"""A SIGTERM to a command's whole process group (a terminal's job control, `timeout`, systemd's stop) reaches its
DataLoader workers (`data.num_workers`) too, and they die by it. torch's SIGCHLD handler in the command then reported
each as 'DataLoader worker (pid N) is killed by signal: Terminated' wherever the cleanup stood: a traceback after
bbuvl's one line in 14 of 20 training runs, and in one more a traceback instead of it, with status 1. Now a command
that is terminating stops watching its children, and says only its line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# torch's own DataLoader with two forked workers, run as `bbuvl` runs a command: the mechanism without a model.
FEEDER = """
import time
import torch.utils.data
from bbuvl.entry import run_as_command

def feed():
    batches = iter(torch.utils.data.DataLoader(range(10**6), batch_size=1, num_workers=2))
    try:
        for i, _ in enumerate(batches):
            if i == 4:
                print("feeding", flush=True)
            time.sleep(0.005)
    finally:
        time.sleep(0.3)  # cleaning up, as train's finally blocks do, while its loader's workers end

run_as_command(feed)
"""


def stop_group(args: list[str], ready: str, timeout: float) -> tuple[int, str]:
    """Start `args` in a process group of its own, SIGTERM the whole group once stdout has a line holding `ready`,
    and return the exit status and stderr."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    try:
        for line in child.stdout:
            if ready in line:
                break
        else:
            pytest.fail(f"{args} ended before {ready!r}: {child.wait()}, {child.stderr.read()}")
        os.killpg(child.pid, signal.SIGTERM)
        _, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    return child.returncode, err


def only_the_line(err: str) -> bool:
    """True when stderr is bbuvl's one line for SIGTERM and nothing else."""
    lines = [line for line in err.splitlines() if line.strip()]
    return len(lines) == 1 and "terminated (SIGTERM)" in lines[0]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_group_sigterm_ends_a_command_feeding_from_dataloader_workers_with_only_its_line():
    status, err = stop_group([sys.executable, "-c", FEEDER], "feeding", timeout=60)
    assert status == 143, err
    assert only_the_line(err), err


@pytest.mark.slow
# one family: the loader's workers are the same for each
@pytest.mark.parametrize("tiny_family", ["qwen2_5_vl"], indirect=True)
def test_a_group_sigterm_mid_training_with_two_loader_workers_prints_only_the_line(tiny_model_dir, small_dataset,
                                                                                  tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-c", "import sys, bbuvl.entry; sys.argv = ['bbuvl', *sys.argv[1:]]; bbuvl.entry.main()",
            "train", str(REPO / "configs" / "demo_shapes.yaml"), f"model.path={tiny_model_dir}",
            f"data.train={small_dataset / 'train.jsonl'}", f"training.output_dir={run}", "training.max_steps=200",
            "data.num_workers=2", "data.sample_cache_mb=0", "training.per_device_batch_size=2",
            "training.logging_steps=1", "training.save_steps=1000"]
    status, err = stop_group(args, "step 2:", timeout=120)
    assert status == 143, err
    assert only_the_line(err), err
    # the run's lock is released with it: the folder takes the next command
    assert not list(tmp_path.rglob("*.lock")), sorted(p.name for p in tmp_path.rglob("*"))
