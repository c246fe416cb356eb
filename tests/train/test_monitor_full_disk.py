"""A save that finds no room (a full disk, a used-up quota, a file past the size limit) is said as such, naming the
checkpoint and how to go on: torch reports an optimizer.pt cut short only as "[enforce fail at inline_container.cc]
unexpected pos N vs M", safetensors as "File too large (os error 27)", and `bbuvl train` printed either as a traceback.
The half checkpoint is removed only once the disk has been asked why the save failed: removed first, it freed the room
the question was about. The full disk is a real small tmpfs, where this machine lets a test mount one; the size limit
is `ulimit -f`, for any user."""

from __future__ import annotations

import errno
import re
import shutil
import subprocess

import pytest
import torch
from typer.testing import CliRunner

from bbuvl.atomic import WriteFailed
from bbuvl.cli import app
from bbuvl.train.trainer import no_room_named
from tests.reliability.faults import file_size_limit, small_tmpfs
from tests.train.test_cli_train_endings import common


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MiB tmpfs, filled but for 64 KiB."""
    where = tmp_path / "disk"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        with (where / "filler").open("wb") as f:
            f.write(b"\0" * (2 * 2**20 - 64 * 2**10))
        yield where
    finally:
        # lazily: the failed save's file may still be open in the exception the test holds
        subprocess.run(["umount", "-l", str(where)], check=True)


def test_a_torch_save_cut_short_on_a_full_disk_is_named_as_a_full_disk(full_disk):
    run = full_disk / "run"
    (run / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(WriteFailed) as raised:
        with no_room_named(run / "checkpoint-2"):
            torch.save({"state": torch.zeros(2**18)}, run / "checkpoint-2" / "optimizer.pt")
    assert raised.value.errno == errno.ENOSPC
    assert str(raised.value.strerror) == f"{run / 'checkpoint-2'}: saving failed (No space left on device)"
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_a_torch_save_cut_short_by_the_file_size_limit_is_named_as_such(tmp_path):
    with pytest.raises(WriteFailed) as raised:
        with file_size_limit(100_000), no_room_named(tmp_path):
            torch.save({"state": torch.zeros(2**18)}, tmp_path / "optimizer.pt")
    assert raised.value.errno == errno.EFBIG and "saving failed (File too large)" in str(raised.value)


def test_another_runtime_error_goes_on_as_it_is(tmp_path):
    with pytest.raises(RuntimeError, match="^not a disk$"):
        with no_room_named(tmp_path):
            raise RuntimeError("not a disk")


def train(tiny_model_dir, small_dataset, out, *more: str) -> tuple[int, str]:
    """`bbuvl train` of two steps saving a checkpoint at each (about 29 MB, 19 MB of it optimizer.pt)."""
    r = CliRunner().invoke(app, ["train", *common(tiny_model_dir, small_dataset, out), "training.max_steps=2",
                                 "training.save_steps=1", *more])
    return r.exit_code, " ".join(r.output.split())


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_past_the_file_size_limit_is_one_line_saying_how_to_go_on(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "run"
    with file_size_limit(10 * 2**20):  # the weights fit, optimizer.pt does not
        code, said = train(tiny_model_dir, small_dataset, out)
    assert code == 2 and f"error: {out / 'checkpoint-1'}: saving failed (File too large). To go on, first lift the " \
                          "file-size limit (ulimit -f), or write the run where files may be larger (FAT32 stops at 4 " \
                          "GiB); it saved no checkpoint whole, so the run starts over: run it again with --overwrite " \
                          "(it removes" in said, said
    assert "Traceback" not in said and not (out / "checkpoint-1").exists()
    code, said = train(tiny_model_dir, small_dataset, out, "--overwrite")
    assert code == 0 and (out / "final").is_dir(), said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_the_disk_has_no_room_for_is_one_line_and_the_run_resumes(tiny_model_dir, small_dataset, tmp_path):
    with small_tmpfs(tmp_path / "disk", kib=44 * 1024) as disk:  # room for checkpoint-1, not for checkpoint-2 beside it
        out = disk / "run"
        code, said = train(tiny_model_dir, small_dataset, out)
        assert code == 2 and f"error: {out / 'checkpoint-2'}: saving failed (No space left on device). To go on, first " \
                              f"free space on that disk; its whole checkpoints are kept, a half-saved one removed; run " \
                              f"it again with --resume to go on from the newest, {out / 'checkpoint-1'}" in said, said
        assert "Traceback" not in said and not (out / "checkpoint-2").exists() and (out / "checkpoint-1").is_dir()
        subprocess.run(["mount", "-o", "remount,size=128m", str(disk)], check=True)  # space freed
        code, said = train(tiny_model_dir, small_dataset, out, "--resume")
        assert code == 0 and (out / "final").is_dir(), said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_resumed_from_another_folder_that_saved_nothing_whole_is_told_a_way_on_that_is_accepted(
        tiny_model_dir, small_dataset, tmp_path):
    first = tmp_path / "a" / "run"
    first.parent.mkdir()
    code, said = train(tiny_model_dir, small_dataset, first, "training.max_steps=1")
    assert code == 0, said
    out = tmp_path / "b" / "run"
    out.parent.mkdir()
    resumed = ["--resume-from", str(first / "checkpoint-1")]
    with file_size_limit(10 * 2**20):  # checkpoint-2's weights fit, its optimizer.pt does not
        code, said = train(tiny_model_dir, small_dataset, out, *resumed)
    assert code == 2 and f"error: {out / 'checkpoint-2'}: saving failed (File too large)" in said, said
    # Before: "run the same command again with --overwrite", which --resume-from refuses; what it names is removed
    # here as the line says, and the same command is then run again
    assert "--overwrite" not in said, said
    listed = re.search(rf"where a re-run refuses what it wrote \((.+)\) as another run's: remove that, then run it "
                       rf"again to go on from {re.escape(resumed[-1])}$", said)
    assert listed, said
    for name in listed.group(1).split(", "):
        shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    code, said = train(tiny_model_dir, small_dataset, out, *resumed)
    assert code == 0 and (out / "final").is_dir(), said
