"""Sequences of train, resume and predict across working folders: a run's checkpoints record its data files where
they were (absolute), and the config that resumes it may spell them as typed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bbuvl.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
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


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_from_another_folder_whose_relative_data_is_other_data_names_both_files(
        run_config, small_dataset, tmp_path, monkeypatch):
    """The same relative config resumed from another folder holding its own data/train.jsonl was refused as
    "data.train 'data/train.jsonl': its content changed", naming neither file."""
    from bbuvl.paths import real_path
    from bbuvl.train.run_record import ResumeMismatch

    one, two = tmp_path / "one", tmp_path / "two"
    for work in (one, two):
        shutil.copytree(small_dataset, work / "data")
    lines = (two / "data" / "train.jsonl").read_text("utf-8").splitlines()
    (two / "data" / "train.jsonl").write_text("\n".join(lines[:4]) + "\n", "utf-8")
    relative = ("data.train=data/train.jsonl", "data.teachers=data/teachers.jsonl", "data.val=null",
                "training.save_steps=1")
    monkeypatch.chdir(one)
    train(run_config(*relative, "training.max_steps=1"), progress=False)
    monkeypatch.chdir(two)
    with pytest.raises(ResumeMismatch) as refused:
        train(run_config(*relative, "training.max_steps=2"), resume=True, progress=False)
    assert (f"data.train '{real_path(one / 'data' / 'train.jsonl')}' (now '{real_path(two / 'data' / 'train.jsonl')}'): "
            "its content changed") in str(refused.value)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_from_another_folder_without_the_relative_data_says_where_it_looked(run_config, small_dataset,
                                                                                    tmp_path, monkeypatch):
    """'data.train data/train.jsonl: no such file' read as if the dataset were gone, where the resume was only run
    from another folder than the one the run trained in."""
    one, elsewhere = tmp_path / "one", tmp_path / "elsewhere"
    shutil.copytree(small_dataset, one / "data")
    elsewhere.mkdir()
    relative = ("data.train=data/train.jsonl", "data.teachers=null", "data.val=data/val.jsonl", "training.save_steps=1")
    monkeypatch.chdir(one)
    train(run_config(*relative, "training.max_steps=1"), progress=False)
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ValueError, match=rf"^data.train data/train.jsonl: no such file \(looked for from {elsewhere}\)$"):
        train(run_config(*relative, "training.max_steps=2"), resume=True, progress=False)
    shutil.copytree(one / "data", elsewhere / "data")
    (elsewhere / "data" / "val.jsonl").unlink()
    with pytest.raises(ValueError, match=rf"^data.val data/val.jsonl: no such file \(looked for from {elsewhere}\); fix"):
        train(run_config(*relative, "training.max_steps=2"), resume=True, progress=False)
