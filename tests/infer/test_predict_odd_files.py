"""Files in a folder given to `bbuvl predict` that are named like photos but are none: each gets its line saying what
it is, and the other photos are predicted. A pipe named like a photo was counted among the files of other formats
('convert others to JPEG or PNG') and left out; an empty file was 'no photo format recognised in its bytes'; and a
pipe put in a photo's place after its name was checked was opened as a file, which waits for a writer forever."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.images import ImageError, load_image
from bbuvl.infer.batch import folder_photos

fifo_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX's")


@fifo_only
def test_predict_gives_each_odd_file_its_line(trained_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (224, 168), (200, 30, 30)).save(folder / "good.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "folder.jpg").mkdir()  # a folder named like a photo: entered, as any folder
    Image.new("RGB", (224, 168), (30, 200, 30)).save(folder / "folder.jpg" / "inside.png")
    (folder / "loop.jpg").symlink_to("loop.jpg")
    os.mkfifo(folder / "pipe.jpg")
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out),
                                      "--mode", "head", "--device", "cpu"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = {line["image"]: line["error"] for line in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert lines == {
        "good.png": None, "folder.jpg/inside.png": None,
        "empty.jpg": f"{folder / 'empty.jpg'}: not an image (an empty file: 0 bytes)",
        "loop.jpg": f"{folder / 'loop.jpg'}: a symbolic link that never reaches a file (its links lead in a loop)",
        "pipe.jpg": f"{folder / 'pipe.jpg'}: not a regular file (a FIFO (named pipe)), so never read as a photo"}
    assert "convert others" not in result.output


def test_a_photo_gone_between_listing_and_reading_is_its_line_not_the_runs_end(trained_checkpoint, tmp_path):
    from bbuvl.infer.predictor import Predictor

    for name in ("a.png", "gone.png"):
        Image.new("RGB", (224, 168), (200, 30, 30)).save(tmp_path / name)
    listed = [str(tmp_path / name) for name in folder_photos(tmp_path)]
    (tmp_path / "gone.png").unlink()
    lines = Predictor.load(trained_checkpoint, device="cpu").predict_lines(listed, "head")
    assert [line["error"] for line in lines] == [None, f"{tmp_path / 'gone.png'}: image file not found"]


@fifo_only
def test_a_pipe_opened_in_a_photos_place_is_refused_without_waiting_for_a_writer(tmp_path):
    # What `_opened` opens once `file_kind` has said the name is a regular file: a pipe put there meanwhile
    os.mkfifo(tmp_path / "swapped.jpg")
    said: list[BaseException] = []
    reader = threading.Thread(target=lambda: said.append(_refused(tmp_path / "swapped.jpg")), daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # blocked in open(): let it go, so the test process can end
        with open(tmp_path / "swapped.jpg", "wb"):
            pass
        pytest.fail("opening the pipe waited for a writer")
    assert isinstance(said[0], ImageError) and "not a regular file" in str(said[0]), said


def _refused(path: Path) -> BaseException | None:
    from bbuvl.data.images import _photo_file

    try:
        _photo_file(path).close()
    except BaseException as e:  # noqa: BLE001 (the test reads what it was)
        return e
    return None


def test_an_empty_photo_says_it_is_empty(tmp_path):
    (tmp_path / "cut.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match=r"cut.jpg: not an image \(an empty file: 0 bytes\)"):
        load_image(tmp_path / "cut.jpg")


def test_a_photo_of_several_pictures_is_its_line_naming_its_frames(trained_checkpoint, tmp_path):
    # An animated PNG was predicted as its first frame without a word, where a GIF was refused (data/images.py
    # frames_problem); a PNG of one picture is still a photo
    from bbuvl.infer.predictor import Predictor
    from tests.data.test_images_frames import pictures

    (tmp_path / "one.png").write_bytes(pictures("PNG", 1))
    (tmp_path / "animated.png").write_bytes(pictures("PNG", 3))
    lines = Predictor.load(trained_checkpoint, device="cpu").predict_lines(
        [str(tmp_path / "one.png"), str(tmp_path / "animated.png")], "head")
    assert lines[0]["error"] is None
    assert lines[1]["error"].startswith(f"{tmp_path / 'animated.png'}: an animated PNG of 3 frames; ")
