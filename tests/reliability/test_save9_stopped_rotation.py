"""A stop while `training.save_total_limit` deletes an old checkpoint-N leaves it whole or gone, never half: rmtree
unlinks file by file (a model's weights in tenths of a second), and a SIGTERM or Ctrl-C there left a checkpoint-N
with some of its files for `predict -c` and `doctor` to be shown."""

from __future__ import annotations

import os

import pytest

from bbuvl.train.callbacks import CheckpointRotation


def _run(tmp_path):
    run = tmp_path / "run"
    for step in (1, 2, 3):
        folder = run / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        for name in ("model.safetensors", "optimizer.pt", "trainer_state.json", "bbuvl.yaml"):
            (folder / name).write_text(f"{name} of step {step}", encoding="utf-8")
    return run


def test_a_stop_while_the_rotation_deletes_a_checkpoint_leaves_none_of_it_under_its_name(tmp_path, monkeypatch):
    run = _run(tmp_path)
    unlink, calls = os.unlink, []

    def stopped_after_one_file(path, *args, **kwargs):  # Ctrl-C as it arrives between two files' unlinks
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", stopped_after_one_file)
    with pytest.raises(KeyboardInterrupt):
        CheckpointRotation(2).rotate(run)
    monkeypatch.undo()
    assert not (run / "checkpoint-1").exists()
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["checkpoint-2", "checkpoint-3"]
    assert CheckpointRotation(2).rotate(run) == []  # nothing more to rotate, and what the stop left goes
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-2", "checkpoint-3"]
