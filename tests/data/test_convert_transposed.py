"""`data convert` of photos whose EXIF orientation transposes them (5: transpose, 7: transverse), annotated on the raw
pixel grid as the camera wrote it: each box must land on its object in the stored upright photo, as Pillow's
exif_transpose (what a viewer shows) puts it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.schema import read_records

RAW = (160, 96)  # the raw grid, wider than high: the stored photo is 96x160
OBJECT = (30, 10, 80, 30)  # off the middle and wider than high, so a corner or axis swapped shows
LABEL = "挡风板/未安装"


def red_bbox(img: Image.Image) -> list[int]:
    """Where the red pixels are: [x1, y1, x2, y2)."""
    a = np.asarray(img.convert("RGB")).astype(int)
    ys, xs = np.nonzero((a[..., 0] > 150) & (a[..., 1] < 100) & (a[..., 2] < 100))
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def photo_on_the_raw_grid(folder: Path, stem: str, orientation: int, shade: int) -> None:
    """A JPEG of RAW with a red OBJECT on its raw grid and EXIF `orientation`, and its platform JSON drawn on that grid."""
    img = Image.new("RGB", RAW, (shade, shade, shade))  # each photo its own grey: no two are near copies
    ImageDraw.Draw(img).rectangle([OBJECT[0], OBJECT[1], OBJECT[2] - 1, OBJECT[3] - 1], fill=(220, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(folder / f"{stem}.jpg", "JPEG", quality=95, exif=exif.tobytes())
    x1, y1, x2, y2 = OBJECT
    feature = {"type": "Feature", "properties": {"contentZh": {"标签": LABEL}},
               "geometry": {"type": "ExtentPolygon", "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]]}}
    data = {"markResult": {"type": "FeatureCollection", "features": [feature]},
            "info": {"width": RAW[0], "height": RAW[1], "depth": 3}}  # the raw size: annotated on the raw grid
    (folder / f"{stem}.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


@pytest.mark.parametrize("orientation", [5, 7])
def test_a_box_drawn_on_the_raw_grid_of_a_transposed_photo_lands_on_its_object(tmp_path, orientation):
    src, out = tmp_path / "export", tmp_path / "dataset"
    src.mkdir()
    photo_on_the_raw_grid(src, "turned", orientation, 120)
    with Image.open(src / "turned.jpg") as im:
        expected = red_bbox(ImageOps.exif_transpose(im))
    photo_on_the_raw_grid(src, "plain", 1, 170)  # a second photo, so that the split has one for each side
    result = CliRunner().invoke(app, ["data", "convert", str(src), str(out), "--workers", "1", "--teachers", "0"])
    assert result.exit_code == 0, result.output
    records = {r.id: r for name in ("train.jsonl", "val.jsonl") for r in read_records(out / name)}
    assert "turned" in records, (out / "errors.jsonl").read_text(encoding="utf-8")  # not dropped as a bad box
    turned = records["turned"]
    stored = Image.open(out / turned.image)
    assert stored.size == (turned.width, turned.height) == (RAW[1], RAW[0])
    assert stored.getexif().get(0x0112, 1) == 1  # stored upright
    [obj] = turned.objects
    assert obj.desc == LABEL
    assert obj.bbox_2d == pytest.approx(red_bbox(stored), abs=2) and obj.bbox_2d == pytest.approx(expected, abs=2)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["exif"]["annotated_on_raw"] == 1
