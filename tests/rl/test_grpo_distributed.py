"""GRPO as two processes on CPU (gloo) trains like one process with the whole batch, and prints its summary once."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from bbuvl.config import dump_config, load_config

from tests.launch import launch_command

pytestmark = pytest.mark.slow

LOGGED = ("loss", "grad_norm", "reward", "reward_detection", "reward_label", "answer_length", "clip_fraction",
          "zero_spread_groups")


def _run(trained_checkpoint: Path, small_dataset: Path, out: Path, processes: int) -> tuple[list[dict], str]:
    """GRPO from the session's checkpoint, 4 photos a step (4 x 1 process or 2 x 2): its logged steps and output."""
    cfg = load_config(None, [
        f"model.path={trained_checkpoint}", "model.dtype=float32", "training.method=grpo",
        f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", "data.teachers=null", "data.num_workers=0",
        f"training.output_dir={out}", f"training.per_device_batch_size={4 // processes}",
        "training.gradient_accumulation_steps=1", "training.max_steps=2", "training.logging_steps=1",
        "training.save_steps=100", "training.bf16=false", "training.gradient_checkpointing=false", "training.use_cpu=true",
        "training.warmup_ratio=0", "training.lr.llm=1e-3", "training.lr.vision=1e-3", "training.lr.merger=1e-3",
        "training.lr.adapter=1e-3", "grpo.group_size=3", "grpo.max_new_tokens=48",
    ])
    config = out.parent / f"{out.name}.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    done = subprocess.run(launch_command(processes, 29541) + ["train", str(config)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    logged = json.loads((out / "history.json").read_text())
    return [h for h in logged if "reward" in h], done.stdout


def test_two_processes_roll_out_score_and_step_like_one_with_the_whole_batch(trained_checkpoint, small_dataset, tmp_path):
    one, _ = _run(trained_checkpoint, small_dataset, tmp_path / "one", 1)
    two, printed = _run(trained_checkpoint, small_dataset, tmp_path / "two", 2)
    assert [h["step"] for h in one] == [h["step"] for h in two] == [1, 2]
    for a, b in zip(one, two):
        for key in LOGGED:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (key, a, b)
    assert any(h["reward"] != one[0]["reward"] or h["loss"] != 0 for h in one)  # rewards moved: something compared
    assert (tmp_path / "two" / "final" / "bbuvl.yaml").exists()
    assert printed.count("checkpoint") == 1  # the summary comes from the first process only
