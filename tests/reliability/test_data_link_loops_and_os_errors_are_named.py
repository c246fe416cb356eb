"""A symbolic link that leads in a loop, given where a data command reads or writes, is one clean error naming it;
and no error a command reports starts with Python's "[Errno N]"."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.cli.common import error_text


def invoke(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


def refused(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    text = " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in text and "[Errno" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def loop(folder: Path) -> Path:
    """Two links naming each other: opening either fails with ELOOP, and Path.resolve() raised RuntimeError."""
    (folder / "loop_b").symlink_to(folder / "loop_a")
    (folder / "loop_a").symlink_to(folder / "loop_b")
    return folder / "loop_a"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """One photo's dataset JSONL."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 48), (90, 120, 30)).save(tmp_path / "images" / "a.jpg")
    path = tmp_path / "d.jsonl"
    path.write_text('{"images": ["images/a.jpg"], "width": 64, "height": 48, "objects": '
                    '[{"bbox_2d": [4, 5, 30, 40], "desc": "线缆"}]}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("command", [
    ["data", "split", "{loop}", "{tmp}/out"],
    ["data", "teachers", "{loop}", "{tmp}/t.jsonl"],
    ["data", "tile", "{loop}", "{tmp}/out"],
    ["data", "export-coco", "{loop}", "{tmp}/c.json"],
    ["data", "import-coco", "{loop}", "{tmp}/images", "{tmp}/out"],
    ["data", "convert", "{loop}", "{tmp}/out"],
    ["data", "check", "{loop}"],
    ["data", "stats", "{loop}"],
    ["data", "check", "{data}", "--hierarchy", "{loop}"],
])
def test_a_link_loop_given_as_an_input_is_one_clean_error_naming_it(tmp_path, dataset, command):
    # split, teachers, tile, export-coco, import-coco and convert ended in "RuntimeError: Symlink loop from ..." (a
    # traceback, from Path.resolve() comparing outputs with inputs); --hierarchy too; import-coco said "[Errno 40]"
    looped = loop(tmp_path)
    args = [a.format(loop=looped, tmp=tmp_path, data=dataset) for a in command]
    refused(invoke(args), str(looped.name))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [
    ["data", "split", "{data}", "{loop}"],
    ["data", "teachers", "{data}", "{loop}"],
    ["data", "stats", "{data}", "--json", "{loop}"],
    ["data", "export-coco", "{data}", "{loop}"],
    ["data", "synth", "{loop}", "--n-train", "1", "--n-val", "0"],
])
def test_a_link_loop_given_as_an_output_is_refused_and_stays(tmp_path, dataset, command):
    looped = loop(tmp_path)
    args = [a.format(loop=looped, data=dataset) for a in command]
    refused(invoke(args), str(looped.name))
    assert os.readlink(looped) == str(tmp_path / "loop_b")


def test_an_os_error_is_told_as_its_file_and_reason_without_errno():
    assert error_text(OSError(40, "Too many levels of symbolic links", "loop_a")) == "loop_a: Too many levels of symbolic links"
    assert error_text(OSError(28, "out.json: writing failed (No space left on device); nothing was written")) == \
        "out.json: writing failed (No space left on device); nothing was written"
    assert error_text(OSError(18, "Invalid cross-device link", "a", None, "b")) == "a -> b: Invalid cross-device link"
    assert error_text(OSError("a folder, not a file")) == "a folder, not a file"
    assert error_text(ValueError("d.jsonl:3: bad")) == "d.jsonl:3: bad"


def test_an_output_folder_that_is_a_link_reaching_nothing_is_named_as_such(tmp_path, dataset):
    # It was "cannot be made a folder: a file has its name, or a folder above it is a file", of a link
    (tmp_path / "dangling").symlink_to(tmp_path / "gone" / "dir")
    looped = loop(tmp_path)
    for out, target in ((tmp_path / "dangling", tmp_path / "gone" / "dir"), (looped, tmp_path / "loop_b")):
        text = refused(invoke(["data", "split", dataset, out]), f"{out}: cannot be made a folder: a link that reaches "
                       f"nothing is there (to {target}, or its links lead in a loop)")
        assert "a file has its name" not in text
    assert not (tmp_path / "gone").exists()


def test_a_folder_that_cannot_be_replaced_is_kept_and_leaves_no_stray_folder(tmp_path, monkeypatch):
    from bbuvl.atomic import atomic_folder

    # `model tiny . --overwrite`: the current folder cannot be renamed (EBUSY); the error said the previous folder was
    # kept, and it was, with an empty `..XXXX.old` folder left in it. Now the folder a command runs in is refused
    # before anything is written (atomic.py), beside it or in it.
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("kept", encoding="utf-8")
    monkeypatch.chdir(work)
    with pytest.raises(OSError, match="is the folder this command runs in"):
        with atomic_folder(".") as tmp:
            (tmp / "new.txt").write_text("new", encoding="utf-8")
    assert sorted(p.name for p in work.iterdir()) == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
