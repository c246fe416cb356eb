"""`data import-coco` of annotations whose bbox is `[0, 0, 0, 0]` beside a segmentation, as some exporters write a box
they never computed: each gets its segmentation's box, where it was dropped as "degenerate box [0.0, 0.0, 0.0, 0.0]"
with its polygon there. A box of no area with no usable segmentation is still refused, naming both."""

from __future__ import annotations

import json

from PIL import Image

from bbuvl.data.coco_files import import_coco
from bbuvl.data.schema import read_records


def test_a_box_of_no_width_and_height_beside_a_segmentation_is_read_from_the_segmentation(tmp_path):
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (200, 100), (30, 100, 90)).save(tmp_path / "photos" / "a.jpg")
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 0, 0], "segmentation": [[10, 10, 60, 10, 60, 40, 10, 40]]},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [100, 10, 30, 30], "segmentation": [[100, 10, 130, 40, 100, 40]]},
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 0, 0], "segmentation": [[1, 2, 3]]},
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [150, 50, 0, 0]},
    ]
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}], "annotations": annotations,
            "categories": [{"id": 1, "name": "线缆"}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco), encoding="utf-8")

    result = import_coco(tmp_path / "coco.json", tmp_path / "photos", tmp_path / "out", val_ratio=0, num_teachers=0)

    (record,) = read_records(tmp_path / "out" / "train.jsonl")
    assert [o.bbox_2d for o in record.objects] == [[10.0, 10.0, 60.0, 40.0], [100.0, 10.0, 130.0, 40.0]]
    assert result.summary["boxes_from_segmentation"] == 1
    assert [(e["entry"], e["reason"]) for e in result.errors] == [
        ("annotations[2]", "bbox [0, 0, 0, 0] has no area, and its segmentation gives none: polygon 0 [1, 2, 3] is not "
                           "x, y pairs of finite numbers, at least three points"),
        ("annotations[3]", "degenerate box [150.0, 50.0, 150.0, 50.0] (a side shorter than 1 pixel)"),
    ]
