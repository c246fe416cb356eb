"""A `bbuvl train` stopped (SIGTERM, Ctrl-C) while it saves a checkpoint-N leaves no half checkpoint: HF writes the
folder in place, weights first and trainer_state.json last, and a stop there left a half checkpoint for predict -c and
doctor behind the line saying half-done work is removed (8 of 8 stops during a save on a tiny run with save_steps=1, before the fix)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bbuvl.model.checkpoint import checkpoint_problem
from bbuvl.train.trainer import train

# How a save is stopped does not depend on the model family: one tiny model is enough
pytestmark = [pytest.mark.filterwarnings("ignore"), pytest.mark.parametrize("tiny_family", ["qwen2_5_vl"], indirect=True)]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_ctrl_c_while_a_checkpoint_is_saved_removes_that_checkpoint_and_keeps_the_whole_one(run_config, tmp_path,
                                                                                              monkeypatch):
    saving = torch.save

    def interrupted_at_step_2(obj, path, *args, **kwargs):  # Ctrl-C as it arrives while torch writes optimizer.pt
        if Path(path).parent.name == "checkpoint-2":
            raise KeyboardInterrupt
        return saving(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted_at_step_2)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(run_config("training.max_steps=3", "training.save_steps=1", "data.val=null"), progress=False)
    assert not (out / "checkpoint-2").exists()  # its weights were written: the half folder went with the save
    assert checkpoint_problem(out / "checkpoint-1") is None and (out / "checkpoint-1" / "trainer_state.json").is_file()


def _train(out: Path, *more: str, cwd: Path) -> subprocess.Popen:
    repo = Path(__file__).resolve().parents[2]
    return subprocess.Popen(
        # the console script, whose SIGTERM and Ctrl-C end the command with its line (bbuvl/entry.py)
        [str(Path(sys.executable).parent / "bbuvl"), "train", str(repo / "configs" / "demo_shapes.yaml"), *more,
         f"training.output_dir={out}", "training.per_device_batch_size=2", "data.sample_cache_mb=0"],
        cwd=cwd, env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo / "src")),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        # a background shell ignores SIGINT otherwise, and nohup SIGHUP
        preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGHUP)])


@pytest.mark.slow
# SIGHUP: a closed terminal or ssh session, which killed the run mid-save at its default (3, 13 or 15 of 20 files left)
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_sigterm_or_sighup_while_bbuvl_train_saves_a_checkpoint_leaves_it_whole_or_absent(
        tiny_model_dir, small_dataset, tmp_path, signum, status):
    out = tmp_path / "run"
    data = [f"model.path={tiny_model_dir}", f"data.train={small_dataset / 'train.jsonl'}", "data.val=null",
            "data.teachers=null"]
    child = _train(out, *data, "training.max_steps=30", "training.save_steps=1", cwd=tmp_path)
    half = out / "checkpoint-2"
    while child.poll() is None and not (half.is_dir() and not (half / "trainer_state.json").exists()):
        time.sleep(0.0005)
    child.send_signal(signum)
    err = child.communicate(timeout=120)[1]
    assert child.returncode == status, err
    for folder in out.glob("checkpoint-*"):
        assert checkpoint_problem(folder) is None and (folder / "trainer_state.json").is_file(), folder


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_ctrl_c_while_final_is_saved_leaves_no_half_final_beside_the_previous_one(run_config, tmp_path, monkeypatch):
    import transformers.modeling_utils as hf

    out = tmp_path / "run"
    (out / ".final.saving").mkdir(parents=True)  # where the save goes; nothing of it may stay
    saving = hf.safe_save_file

    def interrupted_in_final(tensors, path, *args, **kwargs):  # Ctrl-C as it arrives while final/'s weights are written
        if ".final.saving" in str(path):
            raise KeyboardInterrupt
        return saving(tensors, path, *args, **kwargs)

    monkeypatch.setattr(hf, "safe_save_file", interrupted_in_final)
    with pytest.raises(KeyboardInterrupt):
        train(run_config("training.max_steps=1", "data.val=null"), progress=False)
    assert not os.path.lexists(out / ".final.saving") and not (out / "final").exists()
