"""Boxes written in another convention than the photo's pixels are named by their likely cause, per file, as a warning:
0-1000 of each side (on photos over 1000 pixels a side they all fit, and nothing was said) and x/y swapped (only
"lies outside the image" was said)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bbuvl.data.check import check_dataset
from tests.data.test_check import BBU, SCREW, cli, record, write_jpeg, write_jsonl

# Pixel boxes of a 448x336 photo, sorted by (y1, x1), spread over the photo as real ones are.
PIXEL_BOXES = [[40, 30, 150, 120], [260, 60, 420, 200], [100, 180, 240, 320]]


def _objects(boxes: list[list[float]]) -> list[dict]:
    return [{"bbox_2d": b, "desc": BBU if i % 2 else SCREW} for i, b in enumerate(boxes)]


def _dataset(tmp_path: Path, size: tuple[int, int], boxes: list[list[float]], photos: int = 3) -> Path:
    """`photos` photos of `size` under tmp_path, each with `boxes`, in one train.jsonl."""
    lines = []
    for i in range(photos):
        write_jpeg(tmp_path / "images" / f"{i}.jpg", size)
        lines.append(record(f"images/{i}.jpg", size, _objects(boxes)))
    return write_jsonl(tmp_path / "train.jsonl", lines)


def _relative(boxes: list[list[float]], size: tuple[int, int]) -> list[list[int]]:
    return [[round(v / s * 1000) for v, s in zip(b, (*size, *size))] for b in boxes]


def _frame_warnings(path: Path) -> list[str]:
    return [p.message for p in check_dataset(path) if p.severity == "warning" and "bbox_2d" in p.message]


def test_boxes_written_0_to_1000_on_photos_larger_than_1000_pixels_are_named_though_every_box_fits(tmp_path):
    size = (1600, 1200)  # the demo's boxes on photos 1600 wide, written 0-1000: each one fits, top-left
    path = _dataset(tmp_path, size, _relative(PIXEL_BOXES, (448, 336)))
    said = _frame_warnings(path)
    assert len(said) == 1 and "likely written 0-1000 of each side" in said[0] and "1600x1200" in said[0], said
    assert "x times width/1000, y times height/1000" in said[0] and "no `bbuvl data` option" in said[0]
    result = CliRunner().invoke(cli(), ["check", str(path)])
    assert result.exit_code == 0 and "1 warning(s)" in result.output, result.output  # a warning: the boxes do fit


def test_pixel_boxes_on_photos_larger_than_1000_pixels_raise_nothing(tmp_path):
    size = (1600, 1200)
    path = _dataset(tmp_path, size, [[v * 1600 / 448 for v in b] for b in PIXEL_BOXES])
    assert check_dataset(path) == []


def test_boxes_written_0_to_1000_on_small_photos_name_the_frame_beside_each_box_outside(tmp_path):
    size = (448, 336)
    path = _dataset(tmp_path, size, _relative(PIXEL_BOXES, size))
    problems = check_dataset(path)
    assert any(p.severity == "error" and "lies outside the 448x336 image" in p.message for p in problems)
    said = _frame_warnings(path)
    assert len(said) == 1 and "every coordinate of the file is within 0-1000" in said[0], said


def test_boxes_with_x_and_y_swapped_are_named_swapped(tmp_path):
    size = (448, 336)
    path = _dataset(tmp_path, size, [[b[1], b[0], b[3], b[2]] for b in PIXEL_BOXES])
    said = _frame_warnings(path)
    assert len(said) == 1 and "fits inside once x and y are swapped" in said[0] and "[y1, x1, y2, x2]" in said[0], said
    assert "0-1000" not in said[0]


def test_one_box_off_its_photo_among_pixel_boxes_is_named_alone(tmp_path):
    size = (448, 336)
    path = _dataset(tmp_path, size, [*PIXEL_BOXES[:2], [100, 180, 460, 320]], photos=1)  # 12 px past the right edge
    problems = check_dataset(path)
    assert [p.severity for p in problems] == ["error"] and "lies outside" in problems[0].message, problems
