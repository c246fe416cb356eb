"""`data convert` of an export made on Windows or macOS, whose annotation and photo are named one letter case apart
(`img_0001.json` beside the camera's `IMG_0001.JPG`, `b.JPG.json` beside `b.jpg`): one name where the export was
made, so one photo here too; two photos named so on purpose stay two."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

from bbuvl.data.convert import ConvertOptions, convert_dataset
from bbuvl.data.schema import read_records

SIZE = (160, 96)
LABEL = "挡风板/未安装"


def photo(path: Path, shade: int, box: tuple[int, int, int, int]) -> None:
    """A JPEG of its own grey with a red object at `box`."""
    img = Image.new("RGB", SIZE, (shade, shade, shade))
    ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(220, 30, 30))
    img.save(path, "JPEG", quality=95)


def annotation(path: Path, box: tuple[int, int, int, int]) -> None:
    """The platform's JSON of one object at `box`."""
    x1, y1, x2, y2 = box
    feature = {"type": "Feature", "properties": {"contentZh": {"标签": LABEL}},
               "geometry": {"type": "ExtentPolygon", "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]]}}
    data = {"info": {"width": SIZE[0], "height": SIZE[1]},
            "markResult": {"type": "FeatureCollection", "features": [feature]}}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def converted(src: Path, out: Path) -> tuple[dict[str, list[float]], list[dict]]:
    """Each converted photo's box by its stored image, and the lines of errors.jsonl."""
    convert_dataset(src, out, ConvertOptions(val_ratio=0, teachers=0))
    boxes = {r.image: r.objects[0].bbox_2d for r in read_records(out / "train.jsonl")}
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    return boxes, errors


def test_annotation_and_photo_one_letter_case_apart_are_one_photo(tmp_path):
    src = tmp_path / "export"
    (src / "site").mkdir(parents=True)
    photo(src / "site" / "IMG_0001.JPG", 60, (10, 10, 40, 30))
    annotation(src / "site" / "img_0001.json", (10, 10, 40, 30))
    photo(src / "b.jpg", 90, (50, 20, 90, 60))
    annotation(src / "b.JPG.json", (50, 20, 90, 60))  # named after the photo, as Windows spells it
    photo(src / "c.JPG", 120, (100, 40, 150, 80))
    annotation(src / "c.jpg.json", (100, 40, 150, 80))

    boxes, errors = converted(src, tmp_path / "out")

    assert errors == []
    assert boxes == {"images/IMG_0001.jpg": [10.0, 10.0, 40.0, 30.0], "images/b.jpg": [50.0, 20.0, 90.0, 60.0],
                     "images/c.jpg": [100.0, 40.0, 150.0, 80.0]}


def test_two_photos_named_one_letter_case_apart_stay_two(tmp_path):
    src = tmp_path / "export"
    src.mkdir()
    photo(src / "A.jpg", 60, (10, 10, 40, 30))
    annotation(src / "A.json", (10, 10, 40, 30))
    photo(src / "a.jpg", 90, (50, 20, 90, 60))
    annotation(src / "a.json", (50, 20, 90, 60))

    boxes, errors = converted(src, tmp_path / "out")

    assert errors == []
    assert sorted(boxes.values()) == [[10.0, 10.0, 40.0, 30.0], [50.0, 20.0, 90.0, 60.0]]


def test_an_annotation_left_without_its_photo_names_the_photo_in_other_case(tmp_path):
    src = tmp_path / "export"
    src.mkdir()
    photo(src / "x.JPG", 60, (10, 10, 40, 30))
    annotation(src / "x.json", (10, 10, 40, 30))
    annotation(src / "X.json", (50, 20, 90, 60))  # whose photo x.JPG is cannot be told: x.json names it exactly

    boxes, errors = converted(src, tmp_path / "out")

    assert boxes == {"images/x.jpg": [10.0, 10.0, 40.0, 30.0]}
    assert [e["file"] for e in errors] == ["X.json"]
    assert "x.JPG is named so in other letter case" in errors[0]["reason"]
