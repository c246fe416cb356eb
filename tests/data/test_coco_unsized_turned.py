"""`data import-coco` of an image entry without width and height whose photo viewers show turned (EXIF 5-8): its
boxes drawn on the file's own pixel grid land on their objects, where read on the turned photo one past its edge was
dropped ("lies outside the 480x640 image") and the others kept a quarter turn away; boxes that fit both grids keep
the displayed one, counted as assumed (`exif.assumed_displayed`), as `data convert` reads a vendor file without
`info`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from bbuvl.data.coco_files import import_coco
from bbuvl.data.schema import read_records

RAW = (640, 480)


def red_box(img: Image.Image) -> list[float]:
    """Where the red pixels are: [x1, y1, x2, y2)."""
    a = np.asarray(img.convert("RGB")).astype(int)
    ys, xs = np.nonzero((a[..., 0] > 150) & (a[..., 1] < 100) & (a[..., 2] < 100))
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


def unsized_coco(folder: Path, photos: dict[str, tuple[int, tuple[int, int, int, int]]]) -> Path:
    """For each name, a JPEG of RAW with that EXIF orientation and a red box on its raw grid, and a COCO file listing
    it without a size, its box on that grid."""
    images, annotations = [], []
    for i, (name, (orientation, box)) in enumerate(photos.items(), start=1):
        img = Image.new("RGB", RAW, (60 + 40 * i, 110, 120))
        ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(220, 30, 30))
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(folder / name, "JPEG", quality=95, exif=exif.tobytes())
        images.append({"id": i, "file_name": name})
        annotations.append({"id": i, "image_id": i, "category_id": 1,
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    path = folder.parent / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "线缆"}]}), encoding="utf-8")
    return path


def test_boxes_that_fit_only_the_file_grid_are_read_on_it(tmp_path):
    (tmp_path / "photos").mkdir()
    coco = unsized_coco(tmp_path / "photos", {"r6.jpg": (6, (500, 50, 600, 100)), "r8.jpg": (8, (520, 300, 630, 420))})

    result = import_coco(coco, tmp_path / "photos", tmp_path / "out", val_ratio=0, num_teachers=0)

    assert result.errors == []
    for record in read_records(tmp_path / "out" / "train.jsonl"):
        with Image.open(tmp_path / "photos" / Path(record.image).name) as im:
            assert record.objects[0].bbox_2d == red_box(ImageOps.exif_transpose(im))
    assert result.summary["exif"] == {"rotated": 2, "annotated_on_raw": 2, "assumed_displayed": 0}


def test_boxes_that_fit_both_grids_are_read_as_displayed_and_counted_as_assumed(tmp_path):
    (tmp_path / "photos").mkdir()
    coco = unsized_coco(tmp_path / "photos", {"r6.jpg": (6, (100, 50, 200, 100))})

    result = import_coco(coco, tmp_path / "photos", tmp_path / "out", val_ratio=0, num_teachers=0)

    (record,) = read_records(tmp_path / "out" / "train.jsonl")
    assert record.objects[0].bbox_2d == [100.0, 50.0, 200.0, 100.0]
    assert result.summary["exif"] == {"rotated": 1, "annotated_on_raw": 0, "assumed_displayed": 1}
