"""A photo resized since it was predicted (a folder shrunk to save space), in a predictions file with no digests to
tell (another tool's, an older predict's): `fewshot classify` cropped it with boxes of the larger frame, and `fewshot
label` wrote them onto it, clipped, as its truth ('width/height replaced by the image's'). A line's boxes are cropped
only from a photo of the size the line gives, as a dataset record's are; the rest are answered."""

from __future__ import annotations

import json

from PIL import Image

from tests.fewshot.test_hostile_input import photos
from tests.reliability.test_fewshot6_photo_replaced_since_predict import classify_and_label


def test_a_photo_of_another_size_than_its_line_is_left_out_naming_both_sizes(tmp_path):
    support = photos(tmp_path / "support", {"线缆": 2, "标签贴纸": 2})
    Image.new("RGB", (40, 30), (200, 40, 40)).save(tmp_path / "a.jpg")  # predicted at 80x60, halved since
    Image.new("RGB", (80, 60), (40, 40, 200)).save(tmp_path / "b.jpg")
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"image": str(tmp_path / name), "width": 80, "height": 60, "error": None,
                                         "objects": [{"bbox_2d": [4, 4, 30, 20], "label": "线缆", "score": 0.9}]}) + "\n"
                             for name in ("a.jpg", "b.jpg")), encoding="utf-8")
    resized = f"{preds}:1 objects[0]: {tmp_path / 'a.jpg'}: the record says 80x60, the image is 40x30"
    assert classify_and_label(tmp_path, preds, support, resized) == ([f"{preds}:2 objects[0]"], [["b.jpg"]])
