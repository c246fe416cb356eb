"""`bbuvl data synth` refuses what it could not render, before any work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app as bbuvl_app
from bbuvl.cli.common import command_group
from bbuvl.cli.data_synth import synth


def test_a_photo_size_past_what_any_reader_opens_is_refused_before_rendering(tmp_path: Path):
    app = command_group()
    app.command("synth")(synth)
    # Just past the bound; 100000x100000 took all the memory there was.
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "out"), "--size", "9460x9460", "--n-train", "1", "--n-val", "0"])
    assert result.exit_code == 2, result.output
    assert f"more than the {Image.MAX_IMAGE_PIXELS:,} a photo may hold" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("typed, needs", [
    (["--format", "vendor", "--teachers", "3"], "--teachers applies only with --format jsonl"),
    (["--part-fault-rate", "0.5"], "--part-fault-rate applies only with --fault-rate"),
    (["--tile-grid", "2x2"], "--tile-grid applies only with --tile-share"),
    (["--wide-share", "0.5"], "--wide-share applies only with --framing mixed"),  # its default value, typed
])
def test_an_option_typed_where_it_does_nothing_is_refused_before_rendering(tmp_path: Path, typed, needs):
    # Each rendered the photos exit 0 as if it had been used: a vendor export with no teacher pool, fault odds of
    # parts that --fault-rate never drew, a grid no tile was cut on.
    app = command_group()
    app.command("synth")(synth)
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "out"), "--n-train", "1", "--n-val", "0", *typed],
                                env={"COLUMNS": "400"})
    assert result.exit_code == 2 and needs in " ".join(result.output.split()), result.output
    assert not (tmp_path / "out").exists()


def test_the_same_options_where_they_apply_render(tmp_path: Path):
    app = command_group()
    app.command("synth")(synth)
    for n, typed in enumerate((["--fault-rate", "0.3", "--part-fault-rate", "0.5"],
                               ["--framing", "mixed", "--wide-share", "0.5", "--tile-share", "0.2", "--tile-grid", "2x2"])):
        result = CliRunner().invoke(app, ["synth", str(tmp_path / str(n)), "--n-train", "1", "--n-val", "0", "--size",
                                          "160x120", *typed])
        assert result.exit_code == 0, result.output
        assert (tmp_path / str(n) / "train.jsonl").stat().st_size > 0


def _synth(out: Path, *typed: str):
    """`data synth OUT` of three small photos, with `typed` after."""
    app = command_group()
    app.command("synth")(synth)
    return CliRunner().invoke(app, ["synth", str(out), "--n-train", "2", "--n-val", "1", "--teachers", "1",
                                    "--size", "160x120", *typed], env={"COLUMNS": "400"})


def test_overwrite_refuses_a_dataset_written_inside_images_naming_it_and_deletes_nothing(tmp_path: Path):
    outer = tmp_path / "outer"
    assert _synth(outer).exit_code == 0
    inner = outer / "images" / "inner"
    assert _synth(inner, "--seed", "1").exit_code == 0
    before = {p: p.read_bytes() for p in outer.rglob("*") if p.is_file()}

    result = _synth(outer, "--overwrite")

    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"{outer / 'images'}: holds inner/, which `bbuvl data synth` did not write" in said
    assert {p: p.read_bytes() for p in outer.rglob("*") if p.is_file()} == before


def test_overwrite_still_replaces_synths_own_photos_edited_and_leaves_a_file_beside_the_dataset(tmp_path: Path):
    out = tmp_path / "out"
    assert _synth(out).exit_code == 0
    photo = out / "images" / "train_00001.jpg"
    rendered = photo.read_bytes()
    photo.write_bytes(b"retouched")  # synth's own name: --overwrite gives it up, as before
    (out / "pred.jsonl").write_text('{"image": "images/train_00000.jpg", "objects": []}\n')  # written on purpose

    result = _synth(out, "--overwrite")

    assert result.exit_code == 0, result.output
    assert photo.read_bytes() == rendered
    assert (out / "pred.jsonl").read_text().startswith('{"image"')


def _synth_process(out: Path, *typed: str) -> list[str]:
    return [sys.executable, "-m", "bbuvl.cli", "data", "synth", str(out), "--n-train", "2", "--n-val", "1",
            "--teachers", "0", "--size", "160x120", *typed]


def _kill_once_it_locks(command: list[str], lock: Path) -> None:
    """Run `command` and SIGKILL it as soon as its lock file names it: it is then claiming (hashing) its outputs."""
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (lock.is_file() and "data synth" in lock.read_text(encoding="utf-8")):
        assert child.poll() is None and time.monotonic() < deadline, "it ended before it was killed"
        time.sleep(0.001)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(60) == -signal.SIGKILL


@pytest.mark.parametrize("typed", [[], ["--overwrite"]])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_killed_while_it_claims_leaves_the_next_run_refusing_the_files_it_did_not_write(tmp_path: Path, typed):
    # The killed run's lock file names data synth, which the next run took as leave to replace images/ unlooked at
    out = tmp_path / "DS"
    # The runs before and after the kill in this process (the same arguments): only the killed one needs a process
    # of its own, and each process spent ~2 s importing the CLI on the 2-core CI.
    first = CliRunner().invoke(bbuvl_app, _synth_process(out)[3:], env={"COLUMNS": "400"})
    assert first.exit_code == 0, first.output
    (out / "images" / "notes.txt").write_text("mine", encoding="utf-8")
    with (out / "images" / "site_visit.mp4").open("wb") as fh:
        fh.truncate(512 << 20)  # sparse: nothing on disk, a second or so to hash, so the kill lands inside the claim
    _kill_once_it_locks(_synth_process(out, *typed), out / ".images.lock")

    result = CliRunner().invoke(bbuvl_app, _synth_process(out, *typed)[3:], env={"COLUMNS": "400"})

    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert "holds notes.txt, site_visit.mp4, which `bbuvl data synth` did not write" in said, said
    # a plain run is not told --overwrite deletes them: it would itself, taking back the killed run's folder
    assert ("so --overwrite would delete them" if typed else "so running it again, which takes back") in said, said
    assert (out / "images" / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (out / "images" / "site_visit.mp4").stat().st_size == 512 << 20


def test_overwrite_refuses_a_photo_added_under_a_name_synth_writes_but_its_last_run_did_not(tmp_path: Path):
    # Own names were told by a pattern (train_NNNNN.jpg), so a photo of the user's added as the next one went
    out = tmp_path / "out"
    assert _synth(out).exit_code == 0
    added = out / "images" / "train_00002.jpg"
    Image.new("RGB", (160, 120), "red").save(added)
    mine = added.read_bytes()

    result = _synth(out, "--overwrite")

    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{out / 'images'}: holds train_00002.jpg, which `bbuvl data synth`" in said, said
    assert added.read_bytes() == mine
