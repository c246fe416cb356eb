"""A run started from a model folder that another command is still writing, or that lies in the folder of a run still
training (its final/, a checkpoint-N/), is refused naming the writer, before the folder is read. That run's next save
of final/ replaces it and its checkpoint rotation deletes it: the new run's record, and a LoRA run's recorded base,
would digest whatever lay there when they were written, maybe not the weights the run loaded. The writer here is a
real lock (bbuvl/outputs.py) held by another process, as `bbuvl train` holds its training.output_dir."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.train.run_dir import check_not_being_written

HOLD = """
import sys, time
from pathlib import Path
from bbuvl.outputs import hold_outputs
claim = hold_outputs(sys.argv[2], [Path(sys.argv[1])])
print("held", flush=True)
time.sleep(120)
"""


def _hold(folder, command: str) -> subprocess.Popen:
    """Another process holding `folder` as `bbuvl COMMAND` holds its output while it runs."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), command], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


@pytest.mark.parametrize("held, given, flag", [
    ("run", "run/final", "model.path"),  # stage B started from stage A's final/ while stage A goes on (--resume)
    ("run", "run/checkpoint-2", "--resume-from"),  # another run's checkpoint, which its rotation may delete
    ("merged", "merged", "model.path"),  # a folder `model merge-lora --overwrite` is replacing now
])
def test_a_model_folder_being_written_is_refused_naming_the_writer_before_anything_is_read(
        trained_checkpoint, small_dataset, tmp_path, held, given, flag):
    shutil.copytree(trained_checkpoint, tmp_path / given)
    config = tmp_path / "run config [1].yaml"  # the checkpoint's own run, one step long: it would train at once
    shutil.copy(trained_checkpoint / "bbuvl.yaml", config)
    args = ["train", str(config), f"training.output_dir={tmp_path / 'new run'}", "training.max_steps=1",
            f"model.path={tmp_path / given if flag == 'model.path' else trained_checkpoint}"]
    if flag == "--resume-from":
        args += ["--resume-from", str(tmp_path / given)]
    command = "train" if held == "run" else "model merge-lora"
    child = _hold(tmp_path / held, command)
    try:
        result = CliRunner().invoke(app, args)
        said = " ".join(result.output.split())
        assert result.exit_code == 2, result.output
        assert f"{flag} {tmp_path / given}" in said and f"`bbuvl {command}` (pid {child.pid}) is writing it now" in said
        if held != given:
            assert f"lies in {tmp_path / held}" in said
        assert "Traceback" not in result.output and not (tmp_path / "new run").exists()
        assert child.poll() is None  # the refusal took no lock from the writer
    finally:
        child.kill()
        child.wait()
    check_not_being_written({flag: tmp_path / given})  # the writer gone, the same folder is read as any other


@pytest.mark.parametrize("given", ["stage_a/final", "./stage_a/final"])
def test_a_model_folder_not_there_yet_because_its_run_is_being_trained_again_names_the_writer(
        trained_checkpoint, tmp_path, monkeypatch, given):
    """Stage A trained again with --overwrite removes its final/ before saving the new one: stage B started from it
    then was told the hub could not be reached (a relative 'stage_a/final' reads as a hub id) or that no such folder
    exists, as if the path were a typo."""
    (tmp_path / "stage_a").mkdir()
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "run.yaml"
    shutil.copy(trained_checkpoint / "bbuvl.yaml", config)
    child = _hold(tmp_path / "stage_a", "train")
    try:
        result = CliRunner().invoke(app, ["train", str(config), f"training.output_dir={tmp_path / 'stage_b'}",
                                          "training.max_steps=1", f"model.path={given}"], env={"COLUMNS": "400"})
    finally:
        child.kill()
        child.wait()
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"model.path {given}: no such folder yet: `bbuvl train` (pid {child.pid}) is " \
                                      f"writing {tmp_path / 'stage_a'} now" in said, said
    assert not (tmp_path / "stage_b").exists()
