"""A photo whose folder is named in other letter case (`Images/a.jpg` for `images/a.jpg`, a dataset or COCO file
written on Windows or macOS, where it worked) is not found, and the message names the path that is there, as it
does for a file name in other case: "image file not found" alone sent users looking for a missing photo."""

from __future__ import annotations

import json

from PIL import Image

from bbuvl.data.check import check_dataset
from bbuvl.data.coco_files import import_coco

NOTE = "only the letter case differs, which Windows and macOS ignore"


def test_data_check_names_the_path_there_when_a_folder_differs_in_letter_case(tmp_path):
    (tmp_path / "images" / "Site1").mkdir(parents=True)
    Image.new("RGB", (64, 48), (90, 100, 110)).save(tmp_path / "images" / "Site1" / "IMG_1.jpg")
    records = [{"images": [name], "width": 64, "height": 48, "objects": [{"bbox_2d": [4, 4, 20, 20], "desc": "线缆"}]}
               for name in ("Images/Site1/IMG_1.jpg", "images/site1/img_1.JPG", "images/site2/IMG_1.jpg")]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                          encoding="utf-8")

    errors = [p for p in check_dataset(tmp_path / "train.jsonl") if p.severity == "error"]

    assert [(p.line, p.message) for p in errors] == [
        (1, f"image Images/Site1/IMG_1.jpg: image file not found (images/Site1/IMG_1.jpg is there: {NOTE})"),
        (2, f"image images/site1/img_1.JPG: image file not found (Site1/IMG_1.jpg is there: {NOTE})"),
        (3, "image images/site2/IMG_1.jpg: image file not found"),
    ]


def test_import_coco_names_the_path_there_when_a_folder_differs_in_letter_case(tmp_path):
    (tmp_path / "photos" / "site1").mkdir(parents=True)
    Image.new("RGB", (64, 48), (90, 100, 110)).save(tmp_path / "photos" / "site1" / "a.jpg")
    Image.new("RGB", (64, 48), (10, 100, 110)).save(tmp_path / "photos" / "site1" / "b.jpg")
    coco = {"images": [{"id": 1, "file_name": "SITE1\\a.jpg", "width": 64, "height": 48},
                       {"id": 2, "file_name": "site1/b.jpg", "width": 64, "height": 48}],
            "categories": [{"id": 1, "name": "线缆"}],
            "annotations": [{"id": k, "image_id": k, "category_id": 1, "bbox": [4, 4, 16, 16]} for k in (1, 2)]}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")

    result = import_coco(tmp_path / "coco.json", tmp_path / "photos", tmp_path / "out", val_ratio=0, num_teachers=0)

    (error,) = result.errors
    assert error["reason"] == f"image file not found (site1/a.jpg is there: {NOTE})"
