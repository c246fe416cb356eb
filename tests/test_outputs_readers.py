"""A running reader registers what it reads outside it (bbuvl/outputs.py, "Readers"), and a writer that would replace
or delete it refuses, naming the reader; a killed reader holds nothing. The readers here are real processes."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bbuvl.outputs import (READERS_ENV, OutputConflict, claim_outputs, live_readers, readers_dir,
                           refuse_inputs_being_written, refuse_outputs_being_read, register_reading, release_readings)
from tests.reliability.test_train2_model_being_written import _hold

READ = """
import sys, time
from pathlib import Path
from bbuvl.outputs import register_reading
register_reading({"--checkpoint": Path(sys.argv[1])}, command="bbuvl serve")
print("reading", flush=True)
time.sleep(120)
"""


@pytest.fixture(autouse=True)
def registry(tmp_path, monkeypatch) -> Path:
    """Readers register in a folder of this test's, inherited by its child processes."""
    folder = tmp_path / "readers"
    monkeypatch.setenv(READERS_ENV, str(folder))
    return folder


def _reader(path: Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Another process reading `path` as `bbuvl serve -c PATH` does while it serves (from `cwd`, with `env`, when
    given)."""
    child = subprocess.Popen([sys.executable, "-c", READ, str(path)], stdout=subprocess.PIPE, text=True, cwd=cwd,
                             env=env)
    assert child.stdout is not None and child.stdout.readline().strip() == "reading"
    return child


def _checkpoint(folder: Path) -> Path:
    (folder / "final").mkdir(parents=True)
    (folder / "final" / "model.safetensors").write_bytes(b"weights")
    return folder / "final"


def test_a_path_a_live_reader_holds_is_refused_to_a_writer_of_it_of_a_folder_holding_it_and_of_a_file_in_it(tmp_path):
    final = _checkpoint(tmp_path / "run")
    child = _reader(final)
    try:
        for written in (final, tmp_path / "run", final / "model.safetensors"):
            with pytest.raises(OutputConflict) as e:
                refuse_outputs_being_read({"--out": written})
            said = str(e.value)
            assert f"`bbuvl serve` (pid {child.pid}, since " in said and "stop that command first, or write elsewhere" in said
            assert said.startswith(f"{written} (--out): ")
        refuse_outputs_being_read({"--out": tmp_path / "elsewhere"})  # nothing there: nothing to replace
        (tmp_path / "other").mkdir()
        refuse_outputs_being_read({"--out": tmp_path / "other"})  # beside it, not around it
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_a_readers_start_is_named_with_its_utc_offset_to_a_writer_in_another_zone(tmp_path):
    # Before: 'since 2026-12-01 15:44:58', the reader's wall clock, read as this writer's own (hours off)
    final = _checkpoint(tmp_path / "run")
    child = _reader(final, env={**os.environ, "TZ": "XYZ-8"})  # POSIX rule: 8 hours east of UTC
    try:
        with pytest.raises(OutputConflict) as e:
            refuse_outputs_being_read({"--out": final})
    finally:
        child.kill()
        child.wait()
    (since,) = re.findall(rf"\(pid {child.pid}, since (\S+)\)", str(e.value))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00", since), since
    assert abs(datetime.fromisoformat(since) - datetime.now(timezone.utc)) < timedelta(minutes=5)


def test_a_reader_killed_by_sigkill_holds_nothing_and_its_entry_goes(tmp_path, registry):
    final = _checkpoint(tmp_path / "run")
    child = _reader(final)
    entries = list(registry.glob("reader-*.json"))
    assert len(entries) == 1 and str(final) in entries[0].read_text()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    refuse_outputs_being_read({"--out": tmp_path / "run"})
    assert list(registry.iterdir()) == []  # the writer that looked removed the dead reader's file


def test_claim_outputs_with_overwrite_refuses_an_output_a_live_reader_holds_and_takes_it_once_the_reader_is_killed(
        tmp_path):
    final = _checkpoint(tmp_path / "export")
    child = _reader(final)
    try:
        with pytest.raises(OutputConflict, match=f"pid {child.pid}"):
            claim_outputs("model export", {}, folders=[tmp_path / "export"], overwrite=True)
        assert not (tmp_path / ".export.lock").exists()  # refused: it holds nothing
    finally:
        child.kill()
        child.wait()
    claim_outputs("model export", {}, folders=[tmp_path / "export"], overwrite=True).finish(succeeded=True)


def test_this_processs_own_reading_is_no_conflict_and_a_released_one_is_gone(tmp_path, registry):
    final = _checkpoint(tmp_path / "run")
    reading = register_reading({"--checkpoint": final}, command="bbuvl predict")
    refuse_outputs_being_read({"training.output_dir": tmp_path / "run"})  # a command may replace what it read
    assert len(list(registry.glob("reader-*.json"))) == 1
    reading.release()
    assert list(registry.iterdir()) == [] and list(live_readers()) == []


def test_a_read_only_folder_is_read_and_registered_with_nothing_written_into_it(tmp_path, registry):
    final = _checkpoint(tmp_path / "run")
    before = sorted(p.name for p in final.iterdir())
    final.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        child = _reader(final)
        try:
            assert sorted(p.name for p in final.iterdir()) == before
            with pytest.raises(OutputConflict, match=f"pid {child.pid}"):
                refuse_outputs_being_read({"--out": final})
        finally:
            child.kill()
            child.wait()
    finally:
        final.chmod(stat.S_IRWXU)


def test_a_registry_that_cannot_be_written_is_a_warning_and_the_read_goes_on(tmp_path, monkeypatch, caplog):
    blocked = tmp_path / "a file"
    blocked.write_text("")
    monkeypatch.setenv(READERS_ENV, str(blocked / "readers"))
    final = _checkpoint(tmp_path / "run")
    readings = [register_reading({"--checkpoint": final}, command="bbuvl predict") for _ in range(3)]
    assert all(reading.file is None for reading in readings)
    assert caplog.text.count(READERS_ENV) == 1  # said once, not at each of the command's inputs
    release_readings()


def test_the_registry_is_per_user_and_outside_what_is_read(monkeypatch, tmp_path):
    monkeypatch.delenv(READERS_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert readers_dir() == tmp_path / "cache" / "bbuvl" / "readers"


def test_registering_costs_a_fraction_of_a_millisecond_next_to_seconds_of_model_loading(tmp_path):
    final = _checkpoint(tmp_path / "run")
    children = [_reader(final) for _ in range(3)]  # a writer looks through every live reader's entry
    try:
        times, looks = [], []
        for _ in range(50):
            start = time.perf_counter()
            register_reading({"--checkpoint": final}, command="bbuvl predict").release()
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
            with pytest.raises(OutputConflict):
                refuse_outputs_being_read({"--out": final})
            looks.append(time.perf_counter() - start)
        # measured on the 2-core CPU machine: 0.3-0.8 ms to register and release, 0.15 ms to look (docs/outputs.md)
        assert statistics.median(times) < 0.02 and statistics.median(looks) < 0.02
        print(f"register+release {statistics.median(times) * 1e3:.3f} ms, look {statistics.median(looks) * 1e3:.3f} ms")
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_a_folder_moved_after_it_was_read_is_still_refused_where_it_lies_now(tmp_path):
    final = _checkpoint(tmp_path / "run")
    child = _reader(final)
    try:
        (tmp_path / "run").rename(tmp_path / "run_old")  # `mv run run_old` while serving run/final
        with pytest.raises(OutputConflict) as e:
            refuse_outputs_being_read({"training.output_dir": tmp_path / "run_old"})
        assert f"pid {child.pid}" in str(e.value) and f"reading {tmp_path / 'run_old' / 'final'} inside it" in str(e.value)
        (tmp_path / "run_old" / "final").rename(tmp_path / "served")
        with pytest.raises(OutputConflict, match=f"pid {child.pid}"):
            refuse_outputs_being_read({"--out": tmp_path / "served"})
        (tmp_path / "again").mkdir()
        (tmp_path / "again" / "link").symlink_to(tmp_path / "served")  # deleting a link deletes nothing it names
        refuse_outputs_being_read({"--out": tmp_path / "again"})
        refuse_outputs_being_read({"training.output_dir": tmp_path / "run_old"})  # it holds nothing read any more
    finally:
        child.kill()
        child.wait()


def test_a_folder_deleted_under_a_live_reader_keeps_its_inode_so_no_new_file_passes_for_it(tmp_path):
    """The file system gives a deleted folder's inode number to the next new file: a writer looking for where the
    reader's "moved" folder went found a stranger under its own output, and refused it, naming the reader."""
    final = _checkpoint(tmp_path / "run")
    inode = os.stat(final).st_ino
    child = _reader(final)
    try:
        subprocess.run(["rm", "-rf", str(tmp_path / "run")], check=True)  # served from memory; its folder gone
        out = tmp_path / "predictions"
        out.mkdir()
        for i in range(300):
            (out / f"part{i}").mkdir()
        assert all(os.stat(p).st_ino != inode for p in out.iterdir())
        refuse_outputs_being_read({"--out": out})
    finally:
        child.kill()
        child.wait()


def test_a_reader_refused_for_a_writer_leaves_no_entry_and_registers_before_it_looks(tmp_path, registry):
    final = _checkpoint(tmp_path / "run")
    writer = _hold(tmp_path / "run", "train")
    try:
        with pytest.raises(OutputConflict, match=f"pid {writer.pid}"):
            refuse_inputs_being_written({"--checkpoint": final})
        assert list(registry.glob("reader-*.json")) == []
    finally:
        writer.kill()
        writer.wait()
    refuse_inputs_being_written({"--checkpoint": final})
    entries = list(registry.glob("reader-*.json"))
    # registered first, then the writers looked for: a writer starting at that instant sees it (or it sees the writer)
    assert len(entries) == 1 and str(final) in entries[0].read_text()
    release_readings()
    assert list(registry.glob("reader-*.json")) == []


READ_AND_FORK = """
import os, sys, time
from pathlib import Path
from bbuvl.outputs import register_reading
register_reading({"--input": Path(sys.argv[1])}, command="bbuvl train")
worker = os.fork()  # a DataLoader worker
if worker == 0:
    # said by the worker, once it runs: the fork returned in the parent before the child had let go of the entry's
    # lock (outputs.py, at fork), and a parent killed in that moment left a worker that still held it
    print(os.getpid(), flush=True)
    time.sleep(120)
    os._exit(0)
time.sleep(120)
"""


def test_a_reader_killed_while_its_forked_workers_live_on_holds_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("{}\n")
    child = subprocess.Popen([sys.executable, "-c", READ_AND_FORK, str(data / "train.jsonl")], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout is not None
    worker = int(child.stdout.readline())
    try:
        with pytest.raises(OutputConflict, match=f"pid {child.pid}"):
            refuse_outputs_being_read({"--out": data})
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        os.kill(worker, 0)  # the worker is still there, as a DataLoader worker outlives its killed parent a while
        refuse_outputs_being_read({"--out": data})
    finally:
        os.kill(worker, signal.SIGKILL)
        child.kill()
        child.wait()


def test_a_dead_readers_entry_of_another_machine_sharing_the_registry_is_left_to_that_machine(tmp_path, registry):
    final = _checkpoint(tmp_path / "run")
    child = _reader(final)
    entry = next(registry.glob("reader-*.json"))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    text = entry.read_text()
    assert f'"host": "{socket.gethostname()}"' in text
    # as a reader on another node of an NFS home would have left it, where locks may not reach this one
    entry.write_text(text.replace(f'"host": "{socket.gethostname()}"', '"host": "gpu-node-7"'))
    refuse_outputs_being_read({"--out": final})
    assert entry.exists()
    entry.write_text(text)
    refuse_outputs_being_read({"--out": final})
    assert not entry.exists()


@pytest.mark.parametrize("argv, command", [
    (["/usr/lib/python3/site-packages/bbuvl/cli/__main__.py", "serve", "-c", "run/final"], "bbuvl serve"),
    (["/venv/bin/bbuvl", "data", "synth", "demo", "--overwrite"], "bbuvl data synth"),
    (["/venv/bin/bbuvl", "train", "configs/base.yaml"], "bbuvl train"),
    (["-c"], "python"),  # a pytest-xdist worker, `python -c ...`
    (["/venv/bin/pytest", "tests/"], "pytest"),
])
def test_a_reader_is_named_by_the_command_it_was_started_as(tmp_path, registry, monkeypatch, argv, command):
    monkeypatch.setattr(sys, "argv", argv)
    reading = register_reading({"--checkpoint": _checkpoint(tmp_path / "run")})
    try:
        assert f'"command": "{command}"' in reading.file.read_text()
    finally:
        reading.release()


def test_a_folder_named_in_bytes_that_are_no_utf8_is_registered_and_refused_to_a_writer(tmp_path):
    """A folder named in GBK (a Windows share's) is a str with surrogates: the entry escapes them, where writing it
    raised UnicodeEncodeError out of every command reading such a folder."""
    gbk = Path(os.fsdecode(os.fsencode(tmp_path) + b"/" + "机房".encode("gbk")))
    final = _checkpoint(gbk)
    child = subprocess.Popen([sys.executable, "-c", READ, os.fsencode(final)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "reading"
        with pytest.raises(OutputConflict, match=f"pid {child.pid}"):
            refuse_outputs_being_read({"--out": gbk})
    finally:
        child.kill()
        child.wait()


def test_a_checkpoints_choice_is_written_while_a_reader_reads_the_checkpoint_and_its_model_is_not(tmp_path):
    # Before: refused while a predict read the checkpoint, the same choice was taken when the predict started a
    # moment later: which command failed depended on which started first
    final = _checkpoint(tmp_path / "run")
    (final / "verdict_thresholds.json").write_text("{}", encoding="utf-8")  # an earlier choice, chosen again
    child = _reader(final)
    try:
        with claim_outputs("eval", {}, files=[final / "verdict_thresholds.json"], overwrite=True):
            (final / "verdict_thresholds.json").write_text("{}", encoding="utf-8")
        with pytest.raises(OutputConflict, match=f"pid {child.pid}"):
            claim_outputs("model export", {}, files=[final / "model.safetensors"], overwrite=True)
    finally:
        child.kill()
        child.wait()
