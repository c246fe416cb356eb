"""`data convert` of a photo viewers show turned (EXIF 5-8) whose annotation gives no size (no `info`, as the older
dataList shape often has none): its boxes drawn on the file's own pixel grid land on their objects, where read as
drawn on the turned photo one past its edge was dropped ("lies entirely outside") and the others kept in the wrong
place; boxes that fit both grids keep the displayed one, counted as assumed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from bbuvl.data.convert import ConvertOptions, convert_dataset
from bbuvl.data.schema import read_records

RAW = (640, 480)


def red_box(img: Image.Image) -> list[float]:
    """Where the red pixels are: [x1, y1, x2, y2)."""
    a = np.asarray(img.convert("RGB")).astype(int)
    ys, xs = np.nonzero((a[..., 0] > 150) & (a[..., 1] < 100) & (a[..., 2] < 100))
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def turned_photo(src: Path, stem: str, orientation: int, objects: dict[str, tuple[int, int, int, int]]) -> None:
    """A JPEG of RAW with EXIF `orientation` and a red rectangle per object on its raw grid, and a dataList JSON
    without `info` giving each box on that raw grid."""
    for label, box in objects.items():
        img = Image.new("RGB", RAW, (100, 110, 120))
        ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(220, 30, 30))
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(src / f"{stem}_{len(label)}.jpg", "JPEG", quality=95, exif=exif.tobytes())
        items = [{"coordinates": [[box[0], box[1]], [box[2], box[3]]], "properties": {"label": label}}]
        (src / f"{stem}_{len(label)}.json").write_text(json.dumps({"dataList": items}, ensure_ascii=False),
                                                        encoding="utf-8")


def test_boxes_of_an_unsized_annotation_that_fit_only_the_raw_grid_are_read_on_it(tmp_path):
    src = tmp_path / "export"
    src.mkdir()
    # x up to 600: past the 480-wide turned photo, within the 640-wide raw grid
    turned_photo(src, "r6", 6, {"线缆": (500, 50, 600, 100)})
    turned_photo(src, "r8", 8, {"标签贴纸": (520, 300, 630, 420)})

    summary = convert_dataset(src, tmp_path / "out", ConvertOptions(val_ratio=0, teachers=0))

    assert (tmp_path / "out" / "errors.jsonl").read_text(encoding="utf-8") == ""
    for record in read_records(tmp_path / "out" / "train.jsonl"):
        with Image.open(tmp_path / "out" / record.image) as im:
            assert record.objects[0].bbox_2d == red_box(ImageOps.exif_transpose(im))
    assert summary["exif"] == {"rotated": 2, "annotated_on_raw": 2, "annotated_on_displayed": 0,
                               "assumed_displayed": 0}


def test_boxes_that_fit_both_grids_are_read_as_displayed_and_counted_as_assumed(tmp_path):
    src = tmp_path / "export"
    src.mkdir()
    turned_photo(src, "r6", 6, {"线缆": (100, 50, 200, 100)})

    summary = convert_dataset(src, tmp_path / "out", ConvertOptions(val_ratio=0, teachers=0))

    (record,) = read_records(tmp_path / "out" / "train.jsonl")
    assert record.objects[0].bbox_2d == [100.0, 50.0, 200.0, 100.0]
    assert summary["exif"] == {"rotated": 1, "annotated_on_raw": 0, "annotated_on_displayed": 1,
                               "assumed_displayed": 1}
