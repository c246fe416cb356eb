"""A photo named with another suffix than its file's (`a.jpeg` for `a.jpg`, a PNG a tool saved as JPEG since the
annotation was written) is not found, and the message says which file of its name is there: "image file not found"
alone sent users looking for another folder, and `data import-coco` asked whether IMAGES_DIR was the right one."""

from __future__ import annotations

import json

from PIL import Image

from bbuvl.data.check import check_dataset
from bbuvl.data.coco_files import import_coco


def test_data_check_names_the_file_of_the_name_with_another_suffix(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 48), (90, 100, 110)).save(tmp_path / "images" / "a.jpg")
    record = {"images": ["images/a.jpeg"], "width": 64, "height": 48,
              "objects": [{"bbox_2d": [4, 4, 20, 20], "desc": "线缆"}]}
    (tmp_path / "train.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")

    (problem,) = [p for p in check_dataset(tmp_path / "train.jsonl") if p.severity == "error"]

    assert problem.line == 1
    assert problem.message.endswith("image file not found (a.jpg is there: the same name with another suffix)")


def test_import_coco_names_the_files_of_the_name_with_another_suffix(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(("b.JPG", "b.png", "c.jpg")):
        Image.new("RGB", (64, 48), (40 * i, 100, 110)).save(photos / name, "PNG" if name.endswith("png") else "JPEG")
    coco = {"images": [{"id": 1, "file_name": "b.jpeg", "width": 64, "height": 48},
                       {"id": 2, "file_name": "c.jpg", "width": 64, "height": 48}],
            "categories": [{"id": 1, "name": "线缆"}],
            "annotations": [{"id": k, "image_id": k, "category_id": 1, "bbox": [4, 4, 16, 16]} for k in (1, 2)]}
    (tmp_path / "coco.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")

    result = import_coco(tmp_path / "coco.json", photos, tmp_path / "out", val_ratio=0, num_teachers=0)

    (error,) = result.errors
    assert error["entry"] == "images[0]"
    assert error["reason"] == "image file not found (b.JPG, b.png are there: the same name with another suffix)"
