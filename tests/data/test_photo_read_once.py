"""A photo file is opened once to be read: the checks made before Pillow's opener (a JPEG's markers, a PNG's chunks)
read the stream Pillow then opens, and `read_cost` counts a JPEG's scans from where the marker walk stopped, rather
than opening the file again for each check and walking the markers again from the start (bench/photo_opens.py). Every
refusal those checks make stays: tests/data/test_read_cost.py and tests/serve/test_bad_input.py."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bbuvl.data.images import load_image, open_photo, upright_size
from bbuvl.data.read_cost import MAX_SCANS, read_cost
from tests.forged_jpegs import claiming, flooded, rescanned, scanned_one_by_one

_OPENED: list[str] | None = None  # while a test counts: every file opened, by name


def _count_opens(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0]))


sys.addaudithook(_count_opens)  # an audit hook cannot be removed: it counts only while _OPENED is a list


def opens_of(path: Path, read) -> int:  # noqa: ANN001
    """How many times `read(path)` opens `path`."""
    global _OPENED
    _OPENED = []
    try:
        read(path)
        return sum(Path(name).resolve() == path.resolve() for name in _OPENED)
    finally:
        _OPENED = None


def photo(tmp_path: Path, fmt: str, suffix: str, **save: object) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path, fmt, **save)
    return path


@pytest.mark.parametrize("fmt, suffix, save", [
    ("JPEG", ".jpg", {}), ("JPEG", ".jpg", {"progressive": True}), ("PNG", ".png", {}), ("BMP", ".bmp", {}),
    ("TIFF", ".tif", {}), ("WEBP", ".webp", {}),
])
def test_a_photo_is_opened_once_to_be_decoded_and_once_for_its_header(tmp_path, fmt, suffix, save):
    path = photo(tmp_path, fmt, suffix, **save)
    # 3 before: one open to tell a JPEG, one for the check, Pillow's own
    assert opens_of(path, load_image) == 1
    assert opens_of(path, upright_size) == 1
    assert load_image(path).image.size == (64, 48)


class ReadsRecorded(io.BytesIO):
    """Bytes in memory that remember where each read began."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.starts: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.starts.append(self.tell())
        return super().read(size)


def jpeg(progressive: bool) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(
        buf, "JPEG", progressive=progressive, quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("data", [jpeg(False), jpeg(True), rescanned((64, 48), MAX_SCANS + 5), scanned_one_by_one(64),
                                  claiming(30000), rescanned((64, 48), 3, comment=b"\xff\xda\xff\xd9")],
                         ids=["baseline", "progressive", "too many scans", "components one by one", "short",
                              "a comment holding markers"])
def test_the_cost_of_a_jpeg_is_told_from_where_its_first_walk_stopped_and_is_the_same(data):
    stream = ReadsRecorded(data)
    im, first = open_photo(stream)
    with im:
        assert first is not None and first.layout is not None
        stream.starts.clear()
        cost = read_cost(im, first)
        # the markers before the first scan are not read again: the walk goes on from its image data
        assert stream.starts and min(stream.starts) >= first.layout.data_at, (stream.starts, first.layout)
        assert cost == read_cost(im)  # what walking again from the start tells


def test_too_many_markers_among_the_scans_are_still_refused_when_counted_from_the_first():
    im, first = open_photo(io.BytesIO(flooded(2000, "among")))
    with im, pytest.raises(ValueError, match="markers and fill bytes among its scans"):
        read_cost(im, first)


def test_bytes_of_no_jpeg_have_no_walk_to_go_on_from():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    im, first = open_photo(buf)
    with im:
        assert first is None and im.format == "PNG"
