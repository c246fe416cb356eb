"""`training.save_total_limit` deletes a run's old `checkpoint-N/` (train/callbacks.py `CheckpointRotation`), but never
one a live reader of another process holds: it is kept, named once, and deleted at a later save once the reader has
ended. HF's rotation deleted it under a `bbuvl serve` started on it before a `train --resume`. The readers here are
real processes, registered as `bbuvl serve -c PATH` registers (docs/outputs.md, "Readers")."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from bbuvl.train.callbacks import CheckpointRotation
from tests.test_outputs_readers import _reader, registry  # noqa: F401 - the registry fixture, used by every test here


def _kill(child: subprocess.Popen) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    child.stdout.close()


def _checkpoints(out: Path, *steps: int) -> None:
    for step in steps:
        (out / f"checkpoint-{step}").mkdir(parents=True)
        (out / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"weights")


def _save(rotation: CheckpointRotation, out: Path) -> None:
    """What HF calls once a checkpoint is written whole."""
    args = TrainingArguments(output_dir=str(out), use_cpu=True, report_to="none")
    rotation.on_save(args, TrainerState(), TrainerControl())


def _left(out: Path) -> list[str]:
    return sorted((p.name for p in out.glob("checkpoint-*")), key=lambda n: int(n.split("-")[1]))


def test_a_checkpoint_a_live_reader_holds_is_kept_named_once_and_deleted_at_a_later_save_once_it_is_free(
        tmp_path, caplog):
    out = tmp_path / "run"
    _checkpoints(out, 1, 2, 3)
    # registered by a path relative to the reader's own folder, as `serve -c checkpoint-1` run inside the run's folder
    reader = _reader(Path("checkpoint-1"), cwd=out)
    rotation = CheckpointRotation(limit=1)
    try:
        with caplog.at_level(logging.INFO, "bbuvl.train.callbacks"):
            _save(rotation, out)
            assert _left(out) == ["checkpoint-1", "checkpoint-3"]  # the free one went, the newest stays
            _checkpoints(out, 4)
            _save(rotation, out)
            assert _left(out) == ["checkpoint-1", "checkpoint-4"]
        kept = [r.getMessage() for r in caplog.records if "keeping" in r.getMessage()]
        assert len(kept) == 1, kept  # once, not at every save
        assert f"keeping {out / 'checkpoint-1'}, which `bbuvl serve` (pid {reader.pid}, since " in kept[0], kept
        assert "deleted at a later save once that command has ended" in kept[0]
    finally:
        _kill(reader)
    _checkpoints(out, 5)
    _save(rotation, out)
    assert _left(out) == ["checkpoint-5"]


def test_the_rotation_orders_by_step_keeps_the_newest_limit_and_leaves_other_names_and_files_alone(tmp_path):
    out = tmp_path / "run"
    _checkpoints(out, 9, 10, 100)
    (out / "checkpoint-7.bak").mkdir()  # not the run's (run_dir.py refuses it at the start; never rotated here)
    (out / "checkpoint-8").write_text("a file, not a checkpoint")
    os.utime(out / "checkpoint-9", (0, 0))  # HF ordered by times: a touched folder was taken for the newest
    os.utime(out / "checkpoint-100", (0, 0))
    _save(CheckpointRotation(limit=2), out)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-10", "checkpoint-100", "checkpoint-7.bak", "checkpoint-8"]


def test_a_checkpoint_that_cannot_be_deleted_is_named_once_and_the_run_goes_on(tmp_path, caplog):
    if os.geteuid() == 0:
        pytest.skip("root deletes from a read-only folder")
    out = tmp_path / "run"
    _checkpoints(out, 1, 2, 3)
    (out / "checkpoint-1").chmod(stat.S_IRUSR | stat.S_IXUSR)
    rotation = CheckpointRotation(limit=1)
    try:
        with caplog.at_level(logging.WARNING, "bbuvl.train.callbacks"):
            _save(rotation, out)
            _save(rotation, out)
    finally:
        (out / "checkpoint-1").chmod(stat.S_IRWXU)
    assert _left(out) == ["checkpoint-1", "checkpoint-3"]
    said = [r.getMessage() for r in caplog.records if "could not delete" in r.getMessage()]
    assert len(said) == 1 and str(out / "checkpoint-1") in said[0], said


@pytest.mark.slow  # three tiny trainings, 10 s; the rotation itself is tested above with a real reader, in 0.4 s
def test_train_resume_keeps_the_checkpoint_a_server_reads_and_deletes_it_once_the_server_is_killed(
        run_config, tmp_path, caplog, monkeypatch):
    from bbuvl.train.trainer import train

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    first = run_config("training.max_steps=2", "training.save_steps=1", "training.save_total_limit=1",
                       "data.val=null")
    train(first, progress=False)
    assert _left(out) == ["checkpoint-2"]
    server = _reader(out / "checkpoint-2")
    weights = (out / "checkpoint-2" / "model.safetensors").read_bytes()
    try:
        with caplog.at_level(logging.WARNING, "bbuvl.train.callbacks"):
            train(first.model_copy(update={"training": first.training.model_copy(update={"max_steps": 4})}),
                  resume=True, progress=False)
        assert _left(out) == ["checkpoint-2", "checkpoint-4"]
        assert (out / "checkpoint-2" / "model.safetensors").read_bytes() == weights
        assert sum("keeping" in r.getMessage() for r in caplog.records) == 1
    finally:
        _kill(server)
    train(first.model_copy(update={"training": first.training.model_copy(update={"max_steps": 5})}),
          resume=True, progress=False)
    assert _left(out) == ["checkpoint-5"]
