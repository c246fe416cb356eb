"""history.json of a run under torchrun is the first process's, as every record of the run (train/trainer.py `fit`):
every rank wrote it when training ended, and each rank's log ends in its own speeds (train_runtime ...), so the file
held whichever rank ended last."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.launch import launch_command

pytestmark = pytest.mark.slow

LAUNCH = (str(Path(__file__).with_name("two_ranks_slow_end_launch.py")),)


def test_history_is_the_first_ranks_when_another_rank_ends_last(run_config, tmp_path):
    # Before: history.json ended in the second rank's entry (train_runtime 0.88 s where the first rank's was 1.00 s)
    from bbuvl.config import dump_config

    out = tmp_path / "run"
    cfg = run_config(f"training.output_dir={out}", "data.val=null", "training.max_steps=2",
                     "training.per_device_batch_size=1")
    (tmp_path / "run.yaml").write_text(dump_config(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    subprocess.run(launch_command(2, 29581, LAUNCH) + [str(tmp_path / "run.yaml")], check=True, env=env, timeout=600)
    first, second = (json.loads((tmp_path / f"rank{k}.json").read_text(encoding="utf-8")) for k in (0, 1))
    assert first["train_runtime"] != second["train_runtime"]  # the ranks' logs end apart
    assert json.loads((out / "history.json").read_text(encoding="utf-8"))[-1] == first
