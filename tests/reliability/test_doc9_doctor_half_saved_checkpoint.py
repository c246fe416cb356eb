"""A run's checkpoint-N that a `bbuvl train` killed while saving it left half written is refused by every doctor
command that loads a checkpoint, in one line naming the folder, what is missing, the killed writer's pid (its lock file
stays: bbuvl/outputs.py) and the newest whole checkpoint beside it, as `bbuvl train --resume` skips it. HF writes the
weights first and trainer_state.json last, so such a folder loaded and passed every check of `doctor model`. The
writer is a real lock (bbuvl/outputs.py) held by another process, then killed as `kill -9` kills it."""

from __future__ import annotations

import json
import shutil
import signal

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.diagnostics.model_doctor import diagnose_model
from tests.reliability.test_train2_model_being_written import _hold


@pytest.fixture
def killed_run(trained_checkpoint, tmp_path):
    """A run folder as a `bbuvl train` killed while saving step 2 leaves it: a whole checkpoint-1, a checkpoint-2
    with the weights and no trainer_state.json yet, and the writer's lock file."""
    run = tmp_path / "run"
    for name in ("checkpoint-1", "checkpoint-2"):
        shutil.copytree(trained_checkpoint, run / name)
    (run / "checkpoint-1" / "trainer_state.json").write_text(json.dumps({"global_step": 1}), encoding="utf-8")
    child = _hold(run, "train")
    child.send_signal(signal.SIGKILL)
    child.wait()
    return run, child.pid


@pytest.mark.parametrize("command", ["model", "features"])
def test_doctor_refuses_a_checkpoint_a_killed_train_saved_half_naming_the_writer_and_a_whole_one(killed_run, tmp_path,
                                                                                                command):
    run, pid = killed_run
    half = run / "checkpoint-2"
    args = ["doctor", command, str(half)] + ([] if command == "model" else ["--out", str(tmp_path / "out.png"),
                                                                             "--device", "cpu"])
    result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert (f"error: {half}: not saved whole, no trainer_state.json (the save did not finish): `bbuvl train` (pid {pid}) "
            "stopped while saving it" in said), said
    assert f"the newest whole checkpoint beside it is {run / 'checkpoint-1'}" in said
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not list(tmp_path.glob("out.*"))


def test_a_half_saved_checkpoint_is_a_failed_load_for_a_library_caller_and_a_whole_one_is_not_refused(killed_run):
    run, pid = killed_run
    report = diagnose_model(run / "checkpoint-2")
    assert [(c.name, c.status) for c in report.checks] == [("load", "fail")]
    assert f"`bbuvl train` (pid {pid})" in report.checks[0].detail
    from bbuvl.diagnostics.model_doctor import unfinished_save

    assert unfinished_save(run / "checkpoint-1") is None  # the whole one loads as before
