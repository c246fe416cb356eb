"""A run under torchrun says what its start finds once, not once a process: every rank reads the same config, data and
model, and each said the same notes (`training.logging_steps` past `training.max_steps`, `model.reuse_modules` with
nothing to reuse, the checkpoints `--resume` skips, GRPO's keys it ignores and a plain model's defaults), one copy a
rank, so a log of 8 GPUs held each 8 times."""

from __future__ import annotations

import logging
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.launch import free_port, grpo_overrides, launch_command

HANG_S = 300  # each run takes about 20 s



def _two_ranks(cfg, config: Path, *args: str) -> str:
    """`bbuvl train CONFIG ARGS` as two processes on CPU; what they printed (both streams), once it ended well."""
    from bbuvl.config import dump_config

    config.write_text(dump_config(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    done = subprocess.run(launch_command(2, free_port()) + ["train", str(config), *args], env=env, text=True,
                          capture_output=True, timeout=HANG_S)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-3000:]
    return printed


def _said_twice(printed: str) -> list[str]:
    """The warnings printed more than once."""
    return [line for line, n in Counter(line for line in printed.splitlines() if line.startswith("WARNING ")).items()
            if n > 1]


def _sft_config(run_config, out: Path, steps: int):
    """A two-rank SFT run of `steps` whose start has notes to say, a checkpoint a step."""
    return run_config(f"training.output_dir={out}", "data.val=null", f"training.max_steps={steps}",
                      "training.save_steps=1", "training.per_device_batch_size=1", "training.logging_steps=10",
                      "model.reuse_modules=true", "training.detection_freeze_epochs=0")


@pytest.fixture()
def sft_run(run_config, tmp_path) -> tuple[Path, str]:
    """A two-rank SFT run of one step: its folder and what it printed."""
    out = tmp_path / "run"
    return out, _two_ranks(_sft_config(run_config, out, 1), tmp_path / "run.yaml")


# Slow (two processes, 11 s): what is at stake is lines said twice, not a result
@pytest.mark.slow
def test_an_sft_start_under_torchrun_says_each_note_once(sft_run):
    _, printed = sft_run
    # Before: "training.logging_steps (10) is past training.max_steps (1) ..." and "model.reuse_modules: ... holds no
    # head or vision positions to reuse" were printed twice each
    assert "training.logging_steps (10) is past training.max_steps (1)" in printed
    assert "model.reuse_modules:" in printed
    assert _said_twice(printed) == []


@pytest.mark.slow
def test_a_resume_under_torchrun_names_the_cut_checkpoint_it_skips_once(sft_run, run_config, tmp_path):
    out, _ = sft_run
    cut = out / "checkpoint-2"  # a save killed half-way: HF's first files, no trainer_state.json
    cut.mkdir()
    (cut / "config.json").write_text((out / "checkpoint-1" / "config.json").read_text(encoding="utf-8"), encoding="utf-8")
    printed = _two_ranks(_sft_config(run_config, out, 2), tmp_path / "resume.yaml", "--resume")
    assert f"--resume: skipping {cut}" in printed
    assert _said_twice(printed) == []


@pytest.mark.slow
def test_a_grpo_start_under_torchrun_says_each_note_once(tiny_model_dir, small_dataset, tmp_path):
    from bbuvl.config import load_config

    cfg = load_config(None, grpo_overrides(tiny_model_dir, small_dataset / "train.jsonl", None, tmp_path / "run", 1))
    printed = _two_ranks(cfg, tmp_path / "grpo.yaml")
    # Before: the plain model's head note and "training.method grpo ignores ..." were printed twice each
    assert "is a plain model folder" in printed and "training.method grpo ignores" in printed
    assert _said_twice(printed) == []


def test_a_later_rank_leaves_transformers_optional_kernel_notes_to_the_first(monkeypatch, caplog):
    # Before: every rank of a Qwen3.5 run without flash-linear-attention said transformers' note of it (the slow tests
    # above, qwen3_5), so a log of 8 GPUs held it 8 times
    from bbuvl.train.all_ranks import KERNEL_LOGGER, kernel_notes_once

    log = logging.getLogger(KERNEL_LOGGER)
    note = ("`chunk_gated_delta_rule` is falling back to its reference PyTorch implementation because "
            "`flash-linear-attention` is not installed. This is correct but much slower; install "
            "`flash-linear-attention` for the optimized kernel.")
    kept = list(log.filters)
    try:
        with caplog.at_level(logging.WARNING):
            for rank in ("0", "1", "1"):
                monkeypatch.setenv("RANK", rank)
                kernel_notes_once()
                log.warning(note)
                log.warning("Kernel chunk_gated_delta_rule not found in _HUB_KERNEL_MAPPING")
        said = [r.getMessage() for r in caplog.records if r.name == KERNEL_LOGGER]
        # the first process says it; a later one says only the others
        assert said == [note] + ["Kernel chunk_gated_delta_rule not found in _HUB_KERNEL_MAPPING"] * 3, said
        assert len(log.filters) == len(kept) + 1  # added once, however often a process starts a run
    finally:
        log.filters[:] = kept
