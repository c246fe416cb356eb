"""Two processes on CPU (gloo), faults on one rank only: the run skips each bad step on every rank without hanging,
logs it as non-finite, and its health.json and gradient norms are the run's, not one rank's
(tests/train/two_ranks_faults_launch.py says which faults, at which steps)."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import psutil
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bbuvl.train.param_groups import GROUPS
from tests.launch import free_port, launch_command

# Not marked slow: the one run is about 26 s (two processes, each loading the tiny model), and the only test of what
# two ranks do with a non-finite step in the default run

LAUNCH = (str(Path(__file__).with_name("two_ranks_faults_launch.py")),)
HANG_S = 180  # the run takes about 26 s



@pytest.fixture(scope="module")
def runs() -> dict:
    """The runs by model family, so that each is trained once per module."""
    return {}


@pytest.fixture()
def run(run_config, tiny_family, tmp_path, runs) -> tuple[Path, subprocess.CompletedProcess]:
    """The run (5 steps, two in a row non-finite stop it) and how its command ended."""
    if tiny_family not in runs:
        from bbuvl.config import dump_config

        out = tmp_path / "run"
        cfg = run_config(f"training.output_dir={out}", "data.val=null", "training.max_steps=5",
                         "training.max_consecutive_nan=2", "monitor.every_steps=1", "monitor.memory_growth_mb=100",
                         "training.detection_freeze_epochs=0")  # DDP then looks for no unused parameter
        config = tmp_path / "run.yaml"
        config.write_text(dump_config(cfg), encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
        runs[tiny_family] = out, _run_or_kill(launch_command(2, free_port(), LAUNCH) + [str(config)], env, HANG_S)
    out, ended = runs[tiny_family]
    if ended is None:
        # A rank whose loss left a parameter out of its graph hung the run for good (model/detection_loss.py)
        pytest.fail(f"the two-process run hung: killed after {HANG_S} s")
    return out, ended


def _run_or_kill(command: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess | None:
    """`command`'s outcome, or None when it is still running after `timeout` s: then it is killed, and the workers
    torch.distributed.run started too (each in a session of its own, so they outlived it, waiting on each other)."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for child in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        proc.communicate()
        return None
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_step_non_finite_on_one_rank_is_skipped_and_logged_non_finite_on_every_rank(run):
    out, ended = run
    # Before: inf boxes on one rank left the caption and proposal layers without a gradient there, and DDP waited for
    # it on the other rank forever (model/detection_loss.py)
    assert ended.returncode != 0 and "2 consecutive steps with non-finite loss" in ended.stderr + ended.stdout, ended.stderr[-3000:]
    logged = {h["step"]: h for h in json.loads((out / "history.json").read_text()) if "loss" in h}
    # Before: step 2 logged the healthy rank's half of its loss as the step's (a finite value, half the real one)
    assert sorted(logged) == [1, 2, 3, 4]
    assert [math.isnan(logged[s]["loss"]) for s in (1, 2, 3, 4)] == [False, True, False, True]
    assert [logged[s]["nan_skipped"] for s in (1, 2, 3, 4)] == [0, 1, 1, 2]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_health_json_holds_every_ranks_alarms_once(run):
    out, _ = run
    alarms = json.loads((out / "health.json").read_text())["alarms"]
    # Before: the first rank's gradients were its own, finite, and it alone writes health.json: it held no alarm
    assert [a["step"] for a in alarms if a["kind"] == "nonfinite" and not a["subject"].startswith("weights:")] == [2, 4, 5]
    # The leak is the last rank's alone: its alarm is in the file the first rank writes, named by its rank
    memory = [a["message"] for a in alarms if a["kind"] == "memory"]
    assert any(m.startswith("rank 1: ") for m in memory) and all(m.startswith(("rank 0: ", "rank 1: ")) for m in memory)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_gradient_norms_per_group_are_the_steps_reduced_over_the_ranks(run):
    out, _ = run
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    gn = {g: {e.step: e.value for e in acc.Scalars(f"gn/{g}")} for g in GROUPS}
    logged = {h["step"]: h for h in json.loads((out / "history.json").read_text()) if "grad_norm" in h}
    for step in (1, 3):  # HF's grad_norm is taken on the reduced gradients; before, the groups' were one rank's
        assert math.sqrt(sum(gn[g][step] ** 2 for g in GROUPS)) == pytest.approx(logged[step]["grad_norm"], rel=1e-4)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_alarm_every_rank_raises_is_logged_once_and_one_ranks_own_names_it(run):
    out, ended = run
    lines = [line for line in (ended.stdout + ended.stderr).splitlines() if "health alarm [" in line]
    nonfinite = [line for line in lines if "health alarm [nonfinite]" in line]
    # Before: each rank logged the alarms both raise alike, "rank 0: step 2" and "rank 1: step 2": six lines, not three
    assert len(nonfinite) == len(set(nonfinite)) == 3, "\n".join(nonfinite)
    assert all(" rank " not in line.split("step ")[0] for line in nonfinite)
    # The leak is the last rank's: its own process logs it, naming it
    assert any(line for line in lines if "health alarm [memory]" in line and ": rank 1: " in line), "\n".join(lines)
    # Every rank skips a non-finite step alike: before, each said so, six lines for three steps
    skipped = [line for line in (ended.stdout + ended.stderr).splitlines() if "optimizer step skipped" in line]
    assert len(skipped) == len(set(skipped)) == 3, "\n".join(skipped)
