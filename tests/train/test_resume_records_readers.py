"""A resume cuts the run's records back to its checkpoint (train/resume_records.py `cut_back`), removing what the stopped
run left past it: never what a live reader of another process holds. A `bbuvl serve` of a checkpoint whose save was cut
short after its weights (they load; HF's state was never written) lost it under it. The readers are real processes,
registered as `bbuvl serve -c PATH` registers (docs/outputs.md, "Readers")."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from bbuvl.train.resume_records import check_cut_back, cut_back
from bbuvl.train.run_dir import RunDirError
from tests.test_outputs_readers import _reader, registry  # noqa: F401 - the registry fixture, used by every test here


def _stopped_run(out: Path) -> Path:
    """A run stopped at step 4: checkpoint-2 whole, checkpoint-4's save killed after its weights, a batch dump of
    step 3, and its history to step 4; checkpoint-2, the one to resume."""
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "trainer_state.json").write_text(json.dumps(
        {"global_step": 2, "log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.9}]}), encoding="utf-8")
    (out / "checkpoint-4").mkdir()
    (out / "checkpoint-4" / "config.json").write_text("{}", encoding="utf-8")
    (out / "checkpoint-4" / "model.safetensors").write_bytes(b"weights")
    (out / "nan_batches").mkdir()
    (out / "nan_batches" / "step3_0.json").write_text("{}", encoding="utf-8")
    (out / "history.json").write_text(json.dumps([{"step": s, "loss": 1.0} for s in (1, 2, 3, 4)]), encoding="utf-8")
    return out / "checkpoint-2"


def _kill(child) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    child.stdout.close()


@pytest.mark.parametrize("held", ["checkpoint-4", "nan_batches/step3_0.json"])
def test_a_resume_never_removes_what_a_live_reader_holds_past_its_checkpoint_and_names_the_reader(tmp_path, held):
    out = tmp_path / "run"
    ckpt = _stopped_run(out)
    history = (out / "history.json").read_bytes()
    reader = _reader(Path(held), cwd=out)  # by a path relative to the reader's folder, as `serve -c checkpoint-4` there
    try:
        with pytest.raises(RunDirError, match=rf"{out / held} lies past the step resumed \(2\), .* `bbuvl serve` \(pid "
                                              rf"{reader.pid}, since .*\) is reading it; stop that command first, or "
                                              "move it out of training.output_dir"):
            check_cut_back(out, ckpt)  # before the model loads
        # a reader started while the model loaded: the cut, after the load, refuses before it changes anything
        with pytest.raises(RunDirError, match=rf"`bbuvl serve` \(pid {reader.pid}"):
            cut_back(out, ckpt)
        assert (out / held).exists() and (out / "history.json").read_bytes() == history
    finally:
        _kill(reader)
    check_cut_back(out, ckpt)  # its reader killed: nothing holds it
    cut_back(out, ckpt)
    assert not (out / "checkpoint-4").exists() and not any((out / "nan_batches").iterdir())
    assert [h["step"] for h in json.loads((out / "history.json").read_text("utf-8"))] == [1, 2]


def test_a_reader_of_the_checkpoint_resumed_or_of_a_folder_moved_out_does_not_stop_the_cut(tmp_path):
    """What is read and not removed (the checkpoint resumed from; checkpoint-4 moved out of the run's folder, as the
    refusal says to do; the folder a link past the step points to, the link alone being removed) is no reason to
    refuse."""
    out = tmp_path / "run"
    ckpt = _stopped_run(out)
    (out / "checkpoint-4").rename(tmp_path / "kept-4")
    (out / "checkpoint-5").symlink_to(tmp_path / "kept-4")
    readers = [_reader(ckpt), _reader(out / "checkpoint-5")]  # registered where the link points
    try:
        check_cut_back(out, ckpt)
        cut_back(out, ckpt)
        assert not os.path.lexists(out / "checkpoint-5")
        assert (tmp_path / "kept-4" / "model.safetensors").read_bytes() == b"weights" and ckpt.is_dir()
    finally:
        for reader in readers:
            _kill(reader)
