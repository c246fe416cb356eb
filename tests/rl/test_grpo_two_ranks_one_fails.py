"""GRPO as two processes, one of which fails (its reward function raises on that rank alone, as one whose file is
missing on that node does): it says why in one `error:` line, and the other rank, left waiting for it in a collective,
says in one line that another process of the run ended and where to read why, instead of 60 lines of traceback that
named neither."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bbuvl.config import dump_config, load_config
from tests.launch import free_port, grpo_overrides

HANG_S = 300  # the run takes about 20 s

REWARD = '''
import os

CALLS = [0]


def reward(truth, answer):
    CALLS[0] += 1
    if os.environ.get("RANK") == "1" and CALLS[0] > 4:  # past the start's check, a step or two into the run
        raise RuntimeError("rules.json is not on this node")
    return 0.0
'''



# Slow (two processes, 11 s): what is at stake is the waiting rank's message; the run stops either way
@pytest.mark.slow
def test_the_rank_left_waiting_for_a_failed_one_says_so_in_one_line(tiny_model_dir, small_dataset, tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "node_rewards.py").write_text(REWARD, encoding="utf-8")
    cfg = load_config(None, grpo_overrides(tiny_model_dir, small_dataset / "train.jsonl", None, tmp_path / "run", 6)
                      + ["grpo.rewards.user_function=node_rewards:reward", "grpo.rewards.user=0.5"])
    config = tmp_path / "grpo.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "code"), os.environ.get("PYTHONPATH", "")])}
    # torchrun stops the other ranks within --monitor-interval of the first failure (0.1 s by default), which may
    # be before the rank left waiting has said anything: 5 s lets it always have its say, as a slow machine does
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           str(free_port()), "--monitor-interval", "5", "-m", "bbuvl.cli", "train", str(config)],
                          env=env, text=True, capture_output=True, timeout=HANG_S)
    printed = done.stdout + done.stderr
    assert done.returncode != 0
    assert "error: grpo.rewards.user_function node_rewards:reward raised" in printed, printed[-3000:]
    assert "rules.json is not on this node" in printed
    # Before: rank 0 printed "[rank0]: Traceback (most recent call last):" and 60 lines down to gloo's
    # "RuntimeError: ... Connection closed by peer ... Check the logs of the remote worker"
    assert "[rank0]:" not in printed, printed[-5000:]
    said = [line for line in printed.splitlines() if line.startswith("error: rank 0 of 2 stopped")]
    assert len(said) == 1, printed[-3000:]
    assert "another process of this run ended" in said[0] and "Root Cause" in said[0]
