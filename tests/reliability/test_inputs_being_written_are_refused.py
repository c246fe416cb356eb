"""A dataset another command is still writing is refused by the commands that read it, naming the writer: training
would train on part of it, a split or a prediction would cover a moment of another run. The writer here is a real
claim (bbuvl/outputs.py's lock) held by another process, as `bbuvl data convert` holds its output."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app

HOLD = """
import sys, time
from pathlib import Path
from bbuvl.outputs import hold_outputs
claim = hold_outputs("data convert", [Path(sys.argv[1])])
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def being_written(small_dataset, tmp_path):
    """A copy of the small dataset whose train.jsonl another process is writing, and that process."""
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(data / "train.jsonl")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        yield data / "train.jsonl", child
    finally:
        child.kill()
        child.wait()


def test_train_split_and_predict_refuse_a_dataset_another_command_is_writing(being_written, trained_checkpoint,
                                                                             tmp_path):
    train, child = being_written
    commands = {
        "train": ["train", "configs/demo.yaml", f"data.train={train}", "data.val=null",
                  f"model.path={trained_checkpoint}", f"training.output_dir={tmp_path / 'run'}"],
        "data split": ["data", "split", str(train), str(tmp_path / "split")],
        "predict": ["predict", "-c", str(trained_checkpoint), "-i", str(train), "-o", str(tmp_path / "p.jsonl")],
    }
    for name, args in commands.items():
        result = CliRunner().invoke(app, args)
        said = " ".join(result.output.split())
        assert result.exit_code == 2, (name, result.output)
        assert f"`bbuvl data convert` (pid {child.pid}) is still writing it" in said, (name, said)
        assert "Traceback" not in result.output
    assert not any((tmp_path / name).exists() for name in ("run", "split", "p.jsonl"))
    assert child.poll() is None  # the refusals took no lock from the writer
