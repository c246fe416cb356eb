"""A checkpoint, or a file, that another command is still writing is refused by the commands that read it, naming the
writer, before anything is read: also when the writer holds a folder around it (`bbuvl train` holds its run folder and
saves final/ and checkpoint-N/ in it, deleting old ones) or a file inside it. The writer here is a real lock
(bbuvl/outputs.py) held by another process, as `bbuvl train` and `bbuvl data convert` hold their outputs."""

from __future__ import annotations

import shutil
import signal
import socket

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.outputs import OutputConflict, refuse_inputs_being_written
from tests.reliability.test_train2_model_being_written import _hold


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def training(trained_checkpoint, tmp_path):
    """A run folder with final/ and checkpoint-2/ that a `bbuvl train` process is writing, and that process."""
    run = tmp_path / "run"
    for name in ("final", "checkpoint-2"):
        shutil.copytree(trained_checkpoint, run / name)
    child = _hold(run, "train")
    try:
        yield run, child
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("given", ["final", "checkpoint-2", "."])
def test_predict_refuses_a_checkpoint_of_a_run_still_training_naming_the_writer(training, small_dataset, tmp_path,
                                                                               given):
    run, child = training
    checkpoint = (run / given) if given != "." else run
    out = tmp_path / "p.jsonl"
    result = CliRunner().invoke(app, ["predict", "-c", str(checkpoint), "-i", str(small_dataset / "val.jsonl"), "-o",
                                      str(out), "--device", "cpu"], env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"`bbuvl train` (pid {child.pid})" in said, said
    if given != ".":
        assert f"{checkpoint} (--checkpoint): lies in {run}, which `bbuvl train` (pid {child.pid}) is writing now" in said
        assert f"wait for that command to finish, or copy {checkpoint} out of {run} and give the copy as --checkpoint" in said
    else:
        assert f"{run} (--checkpoint): `bbuvl train` (pid {child.pid}) is still writing it" in said
    assert "Traceback" not in result.output and not out.exists()
    assert child.poll() is None  # the refusal took no lock from the writer


def test_serve_refuses_a_checkpoint_of_a_run_still_training_before_it_takes_the_port(training):
    run, child = training
    port = free_port()
    result = CliRunner().invoke(app, ["serve", "-c", str(run / "final"), "--port", str(port), "--device", "cpu"],
                                env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert f"{run / 'final'} (--checkpoint): lies in {run}, which `bbuvl train` (pid {child.pid}) is writing now" in said
    with socket.socket() as s:  # the port was never taken
        s.bind(("127.0.0.1", port))


def test_a_folder_is_refused_while_a_file_in_it_is_written_and_a_file_while_its_folder_is(small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    child = _hold(data / "train.jsonl", "data convert")
    try:
        result = CliRunner().invoke(app, ["doctor", "data", str(data)], env={"COLUMNS": "400"})
        said = " ".join(result.output.split())
        assert result.exit_code == 2, result.output
        assert (f"{data} (DATASET): `bbuvl data convert` (pid {child.pid}) is writing {data / 'train.jsonl'} inside it"
                in said), said
    finally:
        child.kill()
        child.wait()
    child = _hold(data, "data convert")
    try:
        with pytest.raises(OutputConflict, match=f"lies in {data}, which `bbuvl data convert` \\(pid {child.pid}\\)"):
            refuse_inputs_being_written({"--gt": data / "val.jsonl"})
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # Killed, the writer left its lock file: a stale lock is no writer, and the same folder is read as any other.
    assert (tmp_path / ".data.lock").exists()
    refuse_inputs_being_written({"--gt": data / "val.jsonl", "DATASET": data})
