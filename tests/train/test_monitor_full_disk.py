"""A save that torch fails on a full disk is said as one: torch reports an optimizer.pt cut short as "[enforce fail at
inline_container.cc] unexpected pos N vs M", which `bbuvl train` printed as a traceback where it says to free space
and resume. The full disk is a real small tmpfs, where this machine lets a test mount one."""

from __future__ import annotations

import errno
import subprocess

import pytest
import torch

from bbuvl.train.trainer import DISK_FULL_BYTES, disk_full_named


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
    with pytest.raises(OSError) as raised:
        with disk_full_named(run):
            torch.save({"state": torch.zeros(2**18)}, run / "checkpoint-2" / "optimizer.pt")
    assert raised.value.errno == errno.ENOSPC
    assert f"No space left on device (0 bytes free) while saving into {run}: " in str(raised.value)
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_another_runtime_error_goes_on_as_it_is(tmp_path):
    with pytest.raises(RuntimeError, match="^not a disk$"):
        with disk_full_named(tmp_path):
            raise RuntimeError("not a disk")
    assert DISK_FULL_BYTES < 2**24  # "full" is a last megabyte, not a disk merely filling up
