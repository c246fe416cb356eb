"""`data import-coco` reads a category name as `data convert` reads a platform's label: a trailing `/`, a `／` and
spaces around the parts are no part of it. Kept as typed, `线缆/` was a label no hierarchy holds, written into every
photo, and `data check` (so training) refused each of them."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from bbuvl.data.check import check_dataset
from bbuvl.data.coco_files import import_coco
from bbuvl.data.schema import read_records

NAMES = ["线缆/", " 挡风板 ／ 已安装 ", "门//", "标签贴纸"]


def coco_of_each_name(folder: Path) -> Path:
    """Two photos, each with one box of every name in NAMES."""
    images, annotations = [], []
    for i in range(2):
        Image.new("RGB", (200, 100), (60 + 80 * i, 90, 100)).save(folder / f"{i}.jpg")
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "width": 200, "height": 100})
        annotations += [{"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1,
                         "bbox": [10 + 45 * c, 10, 30, 30], "iscrowd": 0} for c in range(len(NAMES))]
    path = folder / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": c + 1, "name": n} for c, n in enumerate(NAMES)]},
                               ensure_ascii=False), encoding="utf-8")
    return path


def test_category_names_are_read_without_empty_parts_and_spaces_around_them(tmp_path):
    (tmp_path / "photos").mkdir()
    coco = coco_of_each_name(tmp_path / "photos")

    result = import_coco(coco, tmp_path / "photos", tmp_path / "out", val_ratio=0, num_teachers=0)

    for record in read_records(tmp_path / "out" / "train.jsonl"):
        assert [o.desc for o in record.objects] == ["线缆", "挡风板/已安装", "门", "标签贴纸"]
    assert result.unknown_labels == {"门": 2}
    problems = check_dataset(tmp_path / "out" / "train.jsonl")
    assert {(p.line, p.message) for p in problems if p.severity == "error"} == {
        (line, "objects[2]: unknown category '门' (known: bbu基带处理单元, 螺丝连接点, 挡风板, 机柜空间, 标签贴纸, 线缆)")
        for line in (1, 2)}
