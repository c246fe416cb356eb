"""A run started from Python (`train`, `train_grpo`, as a notebook calls them) gets what `bbuvl train` gets: its folder
held against every other process and its inputs registered as read while it runs (train/run_dir.py `holding_run`),
and, however it ends, no TensorBoard writer left running (train/monitors.py `closing_event_writers`)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from transformers import TrainerCallback

from bbuvl.outputs import LOCK_SUFFIX, OutputConflict
from bbuvl.rl.trainer import train_grpo
from bbuvl.train.trainer import train
from tests.reliability.test_train2_model_being_written import _hold
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

# Another process's view of a run: whether it may hold the run's folder (as `bbuvl train --overwrite` would), and who
# it sees reading the run's model folder.
LOOK = """
import sys
from pathlib import Path
from bbuvl.outputs import OutputConflict, hold_outputs, reader_around
try:
    hold_outputs("train", [Path(sys.argv[1])]).finish(True)
    print("free")
except OutputConflict as e:
    print("refused:", e)
reader = reader_around(Path(sys.argv[2]))
print("reader:", reader.pid if reader else None)
"""


def _look(run: Path, read: Path) -> str:
    """What another process sees of `run` and of `read` (LOOK)."""
    return subprocess.run([sys.executable, "-c", LOOK, str(run), str(read)], capture_output=True, text=True,
                          timeout=120, check=True).stdout


class _LookAt(TrainerCallback):
    """At the end of step `step`, what another process sees of the run's folder and its model folder."""

    def __init__(self, step: int, run: Path, read: Path):
        self.step, self.run, self.read, self.seen = step, run, read, ""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.seen = _look(self.run, self.read)


class _Interrupt(TrainerCallback):
    """A Ctrl-C at the end of step `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def _event_writers() -> list[threading.Thread]:
    """The TensorBoard event writers' threads alive now."""
    return [t for t in threading.enumerate() if type(t).__name__ == "_AsyncWriterThread" and t.is_alive()]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_started_from_python_holds_its_folder_and_is_seen_reading_its_model_until_it_ends(run_config):
    cfg = run_config("training.max_steps=2", "data.val=null")
    run, model = Path(cfg.training.output_dir), Path(cfg.model.path)
    look = _LookAt(1, run, model)
    train(cfg, progress=False, callbacks=[look])
    # `bbuvl train --overwrite` into the folder was let through and cleared it under the run; predict and serve could
    # not see the run writing final/; a writer of the model folder did not see it read
    assert f"refused: {run}: another `bbuvl train` (pid " in look.seen, look.seen
    assert "reader: None" not in look.seen, look.seen
    assert _look(run, model) == "free\nreader: None\n"
    assert not run.with_name(f".{run.name}{LOCK_SUFFIX}").exists()


def test_a_run_started_from_python_is_refused_a_folder_another_process_writes_before_anything_is_read(run_config):
    cfg = run_config()
    run = Path(cfg.training.output_dir)
    run.mkdir()
    child = _hold(run, "train")
    try:
        with pytest.raises(OutputConflict, match=rf"another `bbuvl train` \(pid {child.pid}\) is writing it"):
            train(cfg, progress=False, overwrite=True)
    finally:
        child.kill()
        child.wait()
    assert list(run.iterdir()) == []


def test_a_grpo_run_started_from_python_is_refused_a_folder_another_process_writes(grpo_config):
    cfg = grpo_config()
    run = Path(cfg.training.output_dir)
    run.mkdir()
    child = _hold(run, "train")
    try:
        with pytest.raises(OutputConflict, match=rf"another `bbuvl train` \(pid {child.pid}\) is writing it"):
            train_grpo(cfg, progress=False)
    finally:
        child.kill()
        child.wait()
    assert list(run.iterdir()) == []


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_stopped_by_a_ctrl_c_leaves_no_tensorboard_writer_running_and_lets_go_of_its_folder(run_config):
    cfg = run_config("training.max_steps=4", "data.val=null")
    run = Path(cfg.training.output_dir)
    before = _event_writers()
    for _ in range(2):  # each stopped run left two more (HF's writer and the health monitors')
        with pytest.raises(KeyboardInterrupt):
            train(cfg, progress=False, overwrite=True, callbacks=[_Interrupt(1)])
    assert [t for t in _event_writers() if t not in before] == []
    assert sorted(p.name for p in (run / "tb").iterdir() if ".health" in p.name)  # its events were written, and closed
    assert _look(run, Path(cfg.model.path)) == "free\nreader: None\n"
