"""`writer_around`: the running writer of a path, of a folder holding it, or of anything under it, however the path is
given (through a link, relative to another working folder); a killed writer's stale lock around it is no writer."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from bbuvl.outputs import (LockLine, OutputConflict, claim_outputs, lock_path, refuse_inputs_being_written, writer_around,
                           writer_at)
from tests.children import reaped
from tests.reliability.test_train2_model_being_written import HOLD, _hold


@pytest.fixture
def held_run(tmp_path):
    """run/final/config.json, and another process holding run/ as `bbuvl train` does while it trains."""
    final = tmp_path / "runs" / "run" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}", encoding="utf-8")
    with reaped(_hold(tmp_path / "runs" / "run", "train")) as child:
        yield tmp_path / "runs" / "run", child


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
    line = LockLine.parse((run.parent / ".run.lock").read_text(encoding="utf-8"))
    assert (line.pid, line.command, line.host) == (str(child.pid), "train", socket.gethostname())
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
        with reaped(_hold(final / name, "choose-tiles")) as child:
            assert writer_around(final) is None
            refuse_inputs_being_written({"--checkpoint": final})
            assert writer_around(final / name).pid == str(child.pid)  # the choice itself is being written
    with reaped(_hold(final / "model.safetensors", "model export")) as child:
        with pytest.raises(OutputConflict, match=f"pid {child.pid}"):
            refuse_inputs_being_written({"--checkpoint": final})


# Another process taking an output's lock as a writer does, with the lock line it is given: a writer of another
# container (pid namespace) or machine, whose pid may be any number, this process's own included.
HOLD_AS = """
import fcntl, sys, time
from pathlib import Path
from bbuvl.outputs import lock_path
path = lock_path(Path(sys.argv[1]))
fh = path.open("a+", encoding="utf-8")
fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
fh.truncate(0)
fh.write(sys.argv[2])
fh.flush()
print("held", flush=True)
time.sleep(120)
"""


@contextmanager
def held_as(out: Path, line: str) -> Iterator[subprocess.Popen]:
    """Another process holding `out` with the lock line `line`, until the block ends."""
    with reaped(subprocess.Popen([sys.executable, "-c", HOLD_AS, str(out), line], stdout=subprocess.PIPE,
                                 text=True)) as child:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        yield child


def test_a_writer_whose_pid_is_this_processs_own_is_another_writer_and_names_its_host(tmp_path):
    # In containers every bbuvl is pid 1: `predict -c run/final` as pid 1 went ahead while `train`, pid 1 of another
    # container sharing the volume, was saving run/ (taken for this process's own claim)
    run, me = tmp_path / "run", os.getpid()
    (run / "final").mkdir(parents=True)
    with held_as(run, f"{me} train\nhost={socket.gethostname()} pidns=4026999999\n") as child:
        writer = writer_at(run)
        assert writer is not None and writer.running and (writer.pid, writer.command) == (str(me), "train")
        assert writer_around(run / "final") is not None
        with pytest.raises(OutputConflict, match=rf"`bbuvl train` \(pid {me} in another pid namespace on host "
                                                 rf"{re.escape(socket.gethostname())}\) is writing now"):
            refuse_inputs_being_written({"-c": run / "final"})
        with pytest.raises(OutputConflict, match=rf"another `bbuvl train` \(pid {me} in another pid namespace"):
            claim_outputs("train", {}, folders=[run])
        assert child.poll() is None
    with held_as(run, f"{me} train\nhost=gpu-node-7 pidns=4026531836\n"):
        assert writer_at(run).who == f"pid {me} on host gpu-node-7"
    with held_as(run, "4242 train\n"):  # a lock of an earlier version: the pid alone
        assert writer_at(run).who == "pid 4242"
    # This process's own claim is no other writer, whatever pid its lock names
    with claim_outputs("train", {}, folders=[run]):
        assert writer_at(run) is None and writer_around(run / "final") is None


def test_a_killed_writers_lock_naming_this_processs_pid_is_a_killed_writers(tmp_path):
    # `eval` as pid 1 took a `predict` killed as pid 1 in another container for itself, and scored its unfinished
    # file without saying so
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"image": "a.jpg", "objects": []}\n', encoding="utf-8")
    lock_path(pred).write_text(f"{os.getpid()} predict\n", encoding="utf-8")  # nobody holds it: its writer was killed
    writer = writer_at(pred)
    assert writer is not None and not writer.running and (writer.pid, writer.command) == (str(os.getpid()), "predict")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="unshare --pid needs root")
def test_two_containers_pid_1_each_see_each_other_as_another_writer(tmp_path):
    """Each process is pid 1 of its own pid namespace, as `docker run ... bbuvl` makes it."""
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    # --kill-child: the container's pid 1 is killed with unshare, which alone the test holds; without it, the holder
    # went on holding the lock for its two minutes after the test
    in_container = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", sys.executable, "-c"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([*in_container, HOLD, str(run), "train"], stdout=subprocess.PIPE, text=True, env=env)
    with reaped(holder):
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert LockLine.parse(lock_path(run).read_text(encoding="utf-8")).pid == "1"
        reader = subprocess.run([*in_container, READ_IN_CONTAINER, str(run / "final")], capture_output=True, text=True,
                                env=env, timeout=60)
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.startswith("1 refused: ") and "`bbuvl train` (pid 1 in another pid namespace" in reader.stdout


READ_IN_CONTAINER = """
import os, sys
from pathlib import Path
from bbuvl.outputs import OutputConflict, refuse_inputs_being_written
try:
    refuse_inputs_being_written({"-c": Path(sys.argv[1])})
    print(os.getpid(), "read it")
except OutputConflict as e:
    print(os.getpid(), "refused:", e)
"""
