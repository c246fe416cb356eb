"""`data check` accepts a dataset whose photo is a JPEG past Pillow's decompression-bomb limit (a phone's 200 MP mode,
decoded at a reduced scale: docs/serving.md, "Photos past Pillow's pixel limit"): the record's size is the stored
photo's, not the decode's. Pillow's own constant is lowered so that a 2000x1500 photo counts as one past the limit."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from bbuvl.data.check import check_dataset


def test_data_check_takes_a_photo_past_the_pixel_limit_at_its_stored_size(tmp_path, monkeypatch):
    (tmp_path / "images").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "images" / "phone.jpg", quality=90)
    line = {"images": ["images/phone.jpg"], "width": 2000, "height": 1500,
            "objects": [{"bbox_2d": [100, 100, 600, 500], "desc": "标签贴纸"}]}
    (tmp_path / "train.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # refused past 2,000,000: the photo's 3.0 M are past it
    problems = check_dataset(tmp_path / "train.jsonl")
    # 'shown upright as 1000x750 ... the record has the raw size' before: the decode's size taken for the photo's
    assert not [p for p in problems if p.severity == "error"], [p.message for p in problems]


def test_import_coco_keeps_a_photo_past_the_pixel_limit_at_its_stored_size(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bbuvl.cli.data import app
    from bbuvl.data.schema import read_records

    (tmp_path / "imgs").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "imgs" / "phone.jpg", quality=90)
    coco = {"images": [{"id": 1, "file_name": "phone.jpg", "width": 2000, "height": 1500}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [100, 100, 500, 400]}],
            "categories": [{"id": 1, "name": "标签贴纸"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    r = CliRunner().invoke(app, ["import-coco", str(tmp_path / "coco.json"), str(tmp_path / "imgs"), str(tmp_path / "out"),
                                 "--val-ratio", "0"])
    assert r.exit_code == 0, r.output
    [record] = read_records(tmp_path / "out" / "train.jsonl")
    # 1000x750 before, the decode's size, with the boxes left in the 2000x1500 photo's pixels: another frame, unsaid
    assert (record.width, record.height) == (2000, 1500) and record.objects[0].bbox_2d == [100.0, 100.0, 600.0, 500.0]
