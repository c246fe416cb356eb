"""bbuvl/atomic.py: the temporaries a killed writer left beside an output go with the next write of that output,
whatever pid their names carry, and the writing process's own never; a folder written whole is never the one the
command runs in; a folder removed whole is never half there under its name."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bbuvl.atomic import (WriteFailed, atomic_folder, atomic_path, remove_dead_removals, remove_dead_writers_temporaries,
                          remove_whole, temporary_folder, write_text_atomic)
from tests.reliability.faults import file_size_limit


def _fill_and_die(folder: str) -> None:
    with atomic_folder(folder) as tmp:
        (tmp / "weights.bin").write_bytes(b"0" * 1000)
        os.kill(os.getpid(), signal.SIGKILL)  # an export killed half-way: no clean-up runs


def test_a_killed_writers_temporary_folder_goes_with_the_next_write_of_the_same_output(tmp_path):
    out = tmp_path / "exported"
    child = multiprocessing.get_context("spawn").Process(target=_fill_and_die, args=(str(out),))
    child.start()
    child.join(60)
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".exported.")]
    assert child.exitcode == -signal.SIGKILL and len(left) == 1 and (left[0] / "weights.bin").exists()
    with atomic_folder(out) as tmp:
        (tmp / "weights.bin").write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def die_at_the_second_rename() -> None:
    """From now on, this process dies (SIGKILL: no clean-up runs) where its second os.rename would start: for a child
    process alone."""
    renames, real = [], os.rename

    def rename(src, dst):
        if renames:
            os.kill(os.getpid(), signal.SIGKILL)
        renames.append(src)
        real(src, dst)

    os.rename = rename  # the os module itself


def _killed_between_the_renames(folder: str) -> None:
    die_at_the_second_rename()
    with atomic_folder(folder) as tmp:
        (tmp / "weights.bin").write_bytes(b"new")


def test_a_folder_whose_writer_died_between_its_renames_is_put_back_by_the_next_writer(tmp_path):
    out = tmp_path / "exported"
    with atomic_folder(out) as tmp:
        (tmp / "weights.bin").write_bytes(b"previous")
    child = multiprocessing.get_context("spawn").Process(target=_killed_between_the_renames, args=(str(out),))
    child.start()
    child.join(60)
    # The previous folder lies aside whole, nothing under its name: readers said "no such folder" for good
    assert child.exitcode == -signal.SIGKILL and not out.exists()
    (aside,) = tmp_path.glob(".exported.*.old")
    assert (aside / "exported" / "weights.bin").read_bytes() == b"previous"
    assert remove_dead_writers_temporaries(out) and (out / "weights.bin").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # the dead writer's new folder went too


def test_this_processs_own_and_another_outputs_temporaries_are_kept(tmp_path):
    out = tmp_path / "a"
    other = tmp_path / ".a.123.4567.abcdefgh.tmp"  # output "a.123"'s, whatever its writer
    unknown = tmp_path / ".a.notapid.tmp.json"  # not a name this module writes
    for p in (other, unknown):
        p.write_text("x", encoding="utf-8")
    with atomic_path(out) as live:  # this process, still writing
        live.write_text("half", encoding="utf-8")
        with atomic_folder(tmp_path / "m") as folder:
            assert remove_dead_writers_temporaries(out) == [] and remove_dead_writers_temporaries(tmp_path / "m") == []
            assert live.exists() and folder.is_dir()
    assert {p.name for p in tmp_path.iterdir()} == {"a", "m", other.name, unknown.name}


def test_a_dead_writers_temporaries_go_whatever_pid_their_names_carry_even_a_running_ones(tmp_path):
    # In a container bbuvl is pid 1 every time: a `model tiny out` killed as pid 1 left `.out.1.XXXXXXXX.tmp` (80 MB),
    # which every later write kept, pid 1 being always "running". Whoever writes an output holds its lock
    # (bbuvl/outputs.py), so a temporary of it that this process did not make is a dead writer's.
    out = tmp_path / "out"
    with atomic_folder(out) as tmp:
        (tmp / "weights.bin").write_bytes(b"previous")
    running = sorted({1, os.getpid(), os.getppid()})  # pids that run now, this process's own among them
    left = [tmp_path / f".out.{pid}.abcdefgh.tmp" for pid in running]
    for folder in left:
        folder.mkdir()
        (folder / "weights.bin").write_bytes(b"0" * 1000)
    (tmp_path / f".out.{os.getppid()}.abcdefgh.tmp.json").write_text("{", encoding="utf-8")  # a file's
    with atomic_folder(out) as tmp:
        (tmp / "weights.bin").write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "weights.bin").read_bytes() == b"new"
    # A writer killed between its renames as pid 1: the previous folder goes back under its name
    out.rename(tmp_path / "kept")
    (tmp_path / ".out.1.abcdefgh.old").mkdir()
    (tmp_path / "kept").rename(tmp_path / ".out.1.abcdefgh.old" / "out")
    assert remove_dead_writers_temporaries(out) == [tmp_path / ".out.1.abcdefgh.old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (out / "weights.bin").read_bytes() == b"new"


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_a_folder_removed_whole_leaves_nothing_and_a_dead_removers_leftover_goes_a_live_ones_stays(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "weights.bin").write_bytes(b"w")
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("mine", encoding="utf-8")
    os.symlink("kept", tmp_path / "link")
    remove_whole(tmp_path / "ckpt")
    remove_whole(tmp_path / "link")  # the link goes, never what it names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and (tmp_path / "kept" / "mine.txt").is_file()
    dead = tmp_path / f".ckpt.{_dead_pid()}.abcdefgh.del"  # a remover killed before it had removed it all
    pid_1 = tmp_path / ".ckpt2.1.abcdefgh.del"  # one killed as pid 1 (a container's): pid 1 runs, its remover not
    live = temporary_folder(tmp_path / "ckpt3", ".del")  # this process: still removing it
    replaced = tmp_path / f".other.{_dead_pid()}.abcdefgh.old"  # no removal: put back by the next writer of `other`
    for folder in (dead, pid_1, live, replaced):
        (folder / "ckpt").mkdir(parents=True)
    assert remove_dead_removals(tmp_path) == [dead, pid_1]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["kept", live.name, replaced.name])


def test_writing_through_a_link_writes_what_it_names_and_keeps_the_link(tmp_path):
    (tmp_path / "run3.json").write_text("old", encoding="utf-8")
    os.symlink("run3.json", tmp_path / "latest.json")
    write_text_atomic(tmp_path / "latest.json", "new")
    assert os.readlink(tmp_path / "latest.json") == "run3.json"
    assert (tmp_path / "run3.json").read_text(encoding="utf-8") == "new"
    (tmp_path / "model-v1").mkdir()
    (tmp_path / "model-v1" / "old.bin").write_bytes(b"old")
    os.symlink("model-v1", tmp_path / "model")
    with atomic_folder(tmp_path / "model") as tmp:
        (tmp / "weights.bin").write_bytes(b"new")
    assert os.readlink(tmp_path / "model") == "model-v1"
    assert sorted(p.name for p in (tmp_path / "model-v1").iterdir()) == ["weights.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "model", "model-v1", "run3.json"]


def test_a_folder_written_whole_is_never_the_folder_the_command_runs_in(tmp_path, monkeypatch):
    # Before: `bbuvl model tiny .` failed with "Device or resource busy", and `model tiny "$PWD"` replaced the folder
    # the shell stood in, leaving it in a deleted folder.
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    for here, spelled in ((out, "."), (out, str(out)), (out / "sub", str(out))):
        monkeypatch.chdir(here)
        with pytest.raises(OSError, match="is the folder this command runs in.*cd \\.\\."):
            with atomic_folder(spelled) as tmp:
                (tmp / "new.txt").write_text("x", encoding="utf-8")
        assert (out / "keep.txt").read_text(encoding="utf-8") == "mine" and (out / "sub").is_dir()
    monkeypatch.chdir(tmp_path)  # from its parent it is written as before
    with atomic_folder(out) as tmp:
        (tmp / "new.txt").write_text("x", encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_a_folder_written_whole_gives_each_file_the_mode_a_plain_open_gives(tmp_path):
    from safetensors.torch import save_file
    import torch

    umask = os.umask(0)
    os.umask(umask)
    with atomic_folder(tmp_path / "model") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp / "model.safetensors"))  # safetensors 0.8 creates it 0600
        (tmp / "config.json").write_text("{}", encoding="utf-8")
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "model").iterdir()}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


def test_a_write_failing_inside_folders_being_written_says_why_once(tmp_path):
    # eval --report onto a full disk said "rep/faults: writing failed (rep/worst: writing failed (rep/.worst.123.tmp/
    # 020_x.png: writing failed (No space left on device); nothing was written); nothing was written); ...".
    import errno

    from bbuvl.atomic import atomic_folder, save_atomic

    def disk_full(fh):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as failed:
        with atomic_folder(tmp_path / "rep" / "faults"), atomic_folder(tmp_path / "rep" / "worst") as worst:
            save_atomic(worst / "020_x.png", disk_full)
    assert failed.value.errno == errno.ENOSPC
    assert failed.value.strerror == f"{tmp_path / 'rep' / 'faults'}: writing failed (No space left on device); nothing was written"
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == []


def test_text_no_utf8_file_holds_is_refused_naming_the_file_and_quoting_it(tmp_path):
    """A path of a folder named in GBK bytes (lone surrogates) in text to write was "'utf-8' codec can't encode
    characters in position 31-34: surrogates not allowed", naming neither the file nor the text."""
    from bbuvl.atomic import atomic_path

    gbk = os.fsdecode("数据".encode("gbk"))
    (tmp_path / "m.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError) as refused:
        write_text_atomic(tmp_path / "m.json", '{"pred": "' + gbk + '/p.jsonl"}')
    assert str(refused.value).startswith(f"{tmp_path / 'm.json'}: not written: it would hold '{{\"pred\": "
                                         '"\\xca\\xfd\\xbe\\xdd/p.jsonl"}\''), refused.value
    with pytest.raises(ValueError, match=r"rows\.csv: not written: it would hold '\\xca\\xfd\\xbe\\xdd/a\.jpg,1"):
        with atomic_path(tmp_path / "rows.csv") as tmp, tmp.open("w", encoding="utf-8") as fh:
            fh.write(f"{gbk}/a.jpg,1\n")  # a writer's own text stream, as fewshot's tables are written
    assert (tmp_path / "m.json").read_text(encoding="utf-8") == "{}" and not (tmp_path / "rows.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no temporary left either


def test_a_librarys_write_cut_short_by_the_file_size_limit_is_a_write_failed_naming_the_file(tmp_path):
    import torch  # here: the other tests of this file need no torch
    from safetensors.torch import save_file

    # torch says "unexpected pos 704 vs 598" and no errno: it is asked of the disk, before the temporary goes
    # safetensors says "File too large (os error 27)": the errno is read from its words
    writers = {"optimizer.pt": lambda tmp: torch.save({"w": torch.ones(100_000)}, tmp),
               "model.safetensors": lambda tmp: save_file({"w": torch.ones(100_000)}, tmp)}
    for name, write in writers.items():
        with pytest.raises(WriteFailed) as raised, file_size_limit(200_000):
            with atomic_path(tmp_path / name) as tmp:
                write(tmp)
        assert raised.value.errno == errno.EFBIG, name
        assert raised.value.strerror == f"{tmp_path / name}: writing failed (File too large); nothing was written"
    assert list(tmp_path.iterdir()) == []
