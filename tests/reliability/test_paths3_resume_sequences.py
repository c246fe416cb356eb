"""Sequences of train, resume and predict across working folders: a run's checkpoints record its data files where
they were (absolute), and the config that resumes it may spell them as typed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bbuvl.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_run_without_its_record_resumes_from_the_folder_it_trained_in_with_its_relative_config(
        run_config, small_dataset, tmp_path, monkeypatch):
    """A run whose run.json is gone (one started before records, or deleted) is compared with its checkpoint's
    bbuvl.yaml: that now holds data.train absolute, and the same relative config was refused as another run's data."""
    work = tmp_path / "work"
    shutil.copytree(small_dataset, work / "data")
    monkeypatch.chdir(work)
    relative = ("data.train=data/train.jsonl", "data.teachers=data/teachers.jsonl", "data.val=null",
                "training.save_steps=1")
    train(run_config(*relative, "training.max_steps=1"), progress=False)
    out = Path(run_config().training.output_dir)
    (out / "run.json").unlink()
    final = train(run_config(*relative, "training.max_steps=2"), resume=True, progress=False)["final"]
    assert (out / "checkpoint-2").is_dir() and Path(final).is_dir()
