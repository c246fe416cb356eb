"""`writer_around`: the running writer of a path, of a folder holding it, or of anything under it, however the path is
given (through a link, relative to another working folder); a killed writer's stale lock around it is no writer."""

from __future__ import annotations

import os
import signal

import pytest

from bbuvl.outputs import OutputConflict, refuse_inputs_being_written, writer_around
from tests.reliability.test_train2_model_being_written import _hold


@pytest.fixture
def held_run(tmp_path):
    """run/final/config.json, and another process holding run/ as `bbuvl train` does while it trains."""
    final = tmp_path / "runs" / "run" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}", encoding="utf-8")
    child = _hold(tmp_path / "runs" / "run", "train")
    try:
        yield tmp_path / "runs" / "run", child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_checkpoint_in_a_held_run_is_found_through_a_link_and_from_another_working_folder(held_run, tmp_path,
                                                                                           monkeypatch):
    run, child = held_run
    (tmp_path / "latest").symlink_to(run / "final")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for given in (tmp_path / "latest", os.path.relpath(run / "final"), os.path.relpath(run / "final" / "config.json")):
        writer = writer_around(given)
        assert writer is not None and (writer.pid, writer.command, writer.output) == (str(child.pid), "train", run), given
    with pytest.raises(OutputConflict, match=f"lies in {run}, which `bbuvl train` \\(pid {child.pid}\\) is writing now"):
        refuse_inputs_being_written({"-c": tmp_path / "latest"})
    assert writer_around(tmp_path / "runs") == writer_around(run) != None  # noqa: E711 - from above and at itself
    monkeypatch.chdir(run / "final")
    assert writer_around(".") is not None  # `predict -c .` from inside the checkpoint


def test_a_killed_writers_lock_around_a_path_is_no_writer(held_run, tmp_path):
    run, child = held_run
    assert writer_around(tmp_path / "unrelated") is None
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert (run.parent / ".run.lock").read_text(encoding="utf-8").split() == [str(child.pid), "train"]
    assert writer_around(run / "final") is None and writer_around(run) is None and writer_around(tmp_path) is None
    refuse_inputs_being_written({"-c": run / "final"})


def test_a_choice_written_into_a_checkpoint_leaves_it_whole_to_readers_and_a_model_file_does_not(tmp_path):
    """`make demo` predicts and scores the close-ups with run/final while `choose-tiles` writes run/final/tile_scale.json
    (and its tiled thresholds): each choice is written whole at once, so the checkpoint is no less whole for it."""
    from bbuvl.data.faults import THRESHOLDS_FILE, TILED_THRESHOLDS_FILE
    from bbuvl.data.scale import TILE_SCALE_FILE
    from bbuvl.outputs import CHOICE_FILES

    assert CHOICE_FILES == {TILE_SCALE_FILE, THRESHOLDS_FILE, TILED_THRESHOLDS_FILE}
    final = tmp_path / "final"
    final.mkdir()
    (final / "model.safetensors").write_bytes(b"weights")
    for name in sorted(CHOICE_FILES):
        child = _hold(final / name, "choose-tiles")
        try:
            assert writer_around(final) is None
            refuse_inputs_being_written({"--checkpoint": final})
            assert writer_around(final / name).pid == str(child.pid)  # the choice itself is being written
        finally:
            child.kill()
            child.wait()
    child = _hold(final / "model.safetensors", "model export")
    try:
        with pytest.raises(OutputConflict, match=f"pid {child.pid}"):
            refuse_inputs_being_written({"--checkpoint": final})
    finally:
        child.kill()
        child.wait()
