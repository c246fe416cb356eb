"""Class: every file is written whole, or not at all; an error names the path.

Photos (synthetic, converted, imported, cropped), reports and checkpoint folders are written to a temporary name
beside their own and renamed over it when complete (bbuvl/atomic.py). Checked on a really full disk (a small tmpfs),
with a write failing half-way, and against a hard-linked snapshot of the photos, whose bytes must not change.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.atomic import atomic_folder
from bbuvl.cli import app
from bbuvl.synthetic.dataset import synthesize
from tests.reliability.faults import file_size_limit, small_tmpfs

SYNTH = ["data", "synth", "--n-train", "3", "--n-val", "1", "--size", "160x120", "--teachers", "1"]


def photos_decode_whole(folder: Path) -> list[str]:
    """Names of the photos under `folder` that do not decode to the end (cut short, damaged)."""
    bad = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            try:
                with Image.open(path) as image:
                    image.load()
            except OSError:
                bad.append(path.name)
    return bad


def test_synth_over_a_hard_linked_snapshot_leaves_the_snapshot_as_it_was(tmp_path):
    out, snap = tmp_path / "ds", tmp_path / "snapshot"
    assert CliRunner().invoke(app, [*SYNTH[:2], str(out), *SYNTH[2:], "--seed", "1"]).exit_code == 0
    snap.mkdir()
    before = {}
    for photo in (out / "images").iterdir():
        os.link(photo, snap / photo.name)  # `cp -al`: a snapshot that costs no space
        before[photo.name] = photo.read_bytes()
    r = CliRunner().invoke(app, [*SYNTH[:2], str(out), *SYNTH[2:], "--seed", "2", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert {p.name: p.read_bytes() for p in snap.iterdir()} == before
    assert any((out / "images" / name).read_bytes() != data for name, data in before.items())  # the new seed's


def test_synth_on_a_full_disk_stops_naming_the_photo_and_leaves_no_cut_short_photo(tmp_path):
    with small_tmpfs(tmp_path / "disk", kib=200) as disk:
        with pytest.raises(OSError) as e:
            synthesize(disk / "ds", 40, 4, seed=0, size=(320, 240))
        assert e.value.errno == errno.ENOSPC and "images/" in str(e.value) and ".jpg" in str(e.value)
        assert photos_decode_whole(disk / "ds" / "images") == []
        assert not [p.name for p in (disk / "ds").rglob("*") if ".tmp" in p.name]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_convert_on_a_full_disk_is_one_clean_error_naming_a_file_and_leaves_no_cut_short_photo(tmp_path):
    synthesize(tmp_path / "vendor", 12, 0, seed=0, size=(320, 240), fmt="vendor")
    with small_tmpfs(tmp_path / "disk", kib=96) as disk:
        r = CliRunner().invoke(app, ["data", "convert", str(tmp_path / "vendor"), str(disk / "out"), "--workers", "1",
                                     "--teachers", "0"])
        assert r.exit_code == 2 and "writing failed (No space left on device)" in " ".join(r.output.split()), r.output
        assert str(disk / "out") in " ".join(r.output.split()) and "Traceback" not in r.output
        assert photos_decode_whole(disk / "out" / "images") == []


def test_a_failing_photo_write_keeps_the_previous_photo_whole(tmp_path):
    # A full disk fails the photo's write itself (ENOSPC, or EFBIG past a file-size limit, as here): the photos are
    # renamed into place without waiting on the disk (docs/data_coco.md), so a write, not a sync, is where it fails.
    out = tmp_path / "ds"
    synthesize(out, 3, 1, seed=1, size=(160, 120))
    before = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    synthesize(tmp_path / "next", 3, 1, seed=2, size=(160, 120))
    smallest = min(p.stat().st_size for p in (tmp_path / "next" / "images").iterdir())
    with pytest.raises(OSError, match=r"images/\w+\.jpg: writing failed .* the previous file is kept"), \
            file_size_limit(smallest - 1):
        synthesize(out, 3, 1, seed=2, size=(160, 120))
    now = {p.name: p.read_bytes() for p in (out / "images").iterdir() if not p.name.startswith(".")}
    assert now == before and photos_decode_whole(out / "images") == []
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(before)  # no temporary left


def test_weights_cut_short_by_a_full_disk_are_one_oserror_naming_the_folder_and_the_old_folder_stays(tmp_path):
    import torch
    from safetensors.torch import save_file

    with small_tmpfs(tmp_path / "disk", kib=512) as disk:
        out = disk / "final"
        with atomic_folder(out) as tmp:
            save_file({"w": torch.zeros(1000)}, tmp / "model.safetensors")
        before = (out / "model.safetensors").read_bytes()
        with pytest.raises(OSError) as e:  # safetensors says SafetensorError("... os error 28")
            with atomic_folder(out) as tmp:
                save_file({"w": torch.ones(200_000)}, tmp / "model.safetensors")
        assert e.value.errno == errno.ENOSPC and "final: writing failed" in str(e.value)
        assert (out / "model.safetensors").read_bytes() == before and [p.name for p in disk.iterdir()] == ["final"]


@pytest.mark.slow  # two tiny models built (~30 s); the fast test above covers the folder swap
def test_a_checkpoint_folder_cut_short_by_a_full_disk_keeps_the_previous_one(tmp_path):
    with small_tmpfs(tmp_path / "disk", kib=6 * 1024) as disk:
        out = disk / "tiny"
        r = CliRunner().invoke(app, ["model", "tiny", str(out), "--hidden", "32", "--layers", "1", "--vision-depth", "1"])
        assert r.exit_code == 0, r.output
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        filler = disk / "filler.bin"
        filler.write_bytes(b"\0" * (disk_free(disk) - 64 * 1024))
        r = CliRunner().invoke(app, ["model", "tiny", str(out), "--hidden", "64", "--layers", "1", "--vision-depth", "1"])
        assert r.exit_code == 2 and "tiny: writing failed" in " ".join(r.output.split()), r.output
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert sorted(p.name for p in disk.iterdir() if p.name != "filler.bin" and not p.name.endswith(".json")) == ["tiny"]


def disk_free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_a_folder_written_atomically_is_all_new_or_all_old(tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "config.json").write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_folder(out) as tmp:
            (tmp / "config.json").write_text("new", encoding="utf-8")
            raise RuntimeError("killed half-way")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"] and (out / "config.json").read_text() == "old"
    with atomic_folder(out) as tmp:
        (tmp / "model.safetensors").write_bytes(b"weights")
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]  # the new folder, nothing of the old
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    shutil.rmtree(out)
    (tmp_path / "ckpt").write_text("a file", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="ckpt: is a file"):
        with atomic_folder(out):
            pass
