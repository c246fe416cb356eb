"""`data import-coco` of the files other tools write, as a user meets them: one category id listed twice, the sizes a
file gives against the photos it names (EXIF-rotated, resized), and the file exported and imported again."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw
from typer.testing import CliRunner

from bbuvl.cli.data import app
from bbuvl.data.schema import read_records

LABEL = "线缆"


def run(*args: object) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed, joined onto one line."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def photo(path: Path, shade: int, size: tuple[int, int] = (64, 48), orientation: int = 1) -> Path:
    """A real JPEG of its own (a grey of `shade`, a red block), with an EXIF orientation when it is not 1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (shade, shade, shade))
    ImageDraw.Draw(image).rectangle([5, 5, 20, 15], fill=(220, 20, 20))
    exif = image.getexif()
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def coco_file(path: Path, images: list[dict], annotations: list[dict], categories: list[dict] | None = None) -> Path:
    """A COCO file; its categories LABEL (id 1) unless given."""
    categories = categories or [{"id": 1, "name": LABEL}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories},
                               ensure_ascii=False), encoding="utf-8")
    return path


def errors_of(out: Path) -> list[dict]:
    """errors.jsonl of a dataset folder."""
    return [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]


def test_a_category_id_listed_twice_with_one_label_typed_two_ways_is_one_category(tmp_path: Path):
    # A merge of two exports, one of which wrote a space after the name: every box of the category was refused as
    # "listed with more than one name (线缆, 线缆 )", and a photo holding only those was left out.
    photo(tmp_path / "images" / "a.jpg", 40)
    ann = coco_file(tmp_path / "c.json", [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                    [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
                     {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10]}],
                    [{"id": 1, "name": LABEL}, {"id": 1, "name": f"{LABEL} "}, {"id": 2, "name": "螺丝"},
                     {"id": 2, "name": "Cable"}])
    out = tmp_path / "out"
    code, said = run("import-coco", ann, tmp_path / "images", out, "--val-ratio", "0")
    assert code == 0, said
    (record,) = read_records(out / "train.jsonl")
    assert [(o.desc, o.bbox_2d) for o in record.objects] == [(LABEL, [1, 1, 11, 11])]
    (error,) = errors_of(out)  # two labels under one id stay refused: which one a box meant is unknown
    assert error["entry"] == "annotations[1]" and error["reason"] == "category id 2 is listed with more than one name " \
                                                                      "(Cable, 螺丝)"


def test_a_turned_phone_photo_resized_since_it_was_annotated_on_its_file_grid_gets_its_boxes_scaled_and_turned(
        tmp_path: Path):
    # Refused before ("width/height 128x96 do not match image"), where `data convert` reads a vendor file of the same
    # sizes; a square photo viewers show turned was read as shown without a word, where convert counts it as assumed.
    photo(tmp_path / "images" / "turned.jpg", 40, (64, 48), orientation=6)  # drawn on at 128x96, its file's grid
    photo(tmp_path / "images" / "square.jpg", 120, (50, 50), orientation=6)
    ann = coco_file(tmp_path / "c.json", [{"id": 1, "file_name": "turned.jpg", "width": 128, "height": 96},
                                          {"id": 2, "file_name": "square.jpg", "width": 50, "height": 50}],
                    [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 32, 22]},  # the block, at twice its size
                     {"id": 2, "image_id": 2, "category_id": 1, "bbox": [10, 10, 20, 5]}])
    out = tmp_path / "out"
    code, said = run("import-coco", ann, tmp_path / "images", out, "--val-ratio", "0")
    assert code == 0, said
    assert "1 photo(s) are of another resolution than the COCO file gives them, with the same shape" in said, said
    assert "1 EXIF-turned photo(s) are square or only flipped: their COCO size cannot tell the file's grid" in said, said
    records = {r.id: r for r in read_records(out / "train.jsonl")}
    turned = records["1"]
    assert (turned.width, turned.height) == (48, 64)
    assert [o.bbox_2d for o in turned.objects] == [[48 - 16, 5, 48 - 5, 21]]  # the block's place, upright
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["exif"] == {"rotated": 2, "annotated_on_raw": 1, "assumed_displayed": 1}
    assert summary["resolution_differs"] == 1
    assert not (out / "errors.jsonl").read_text(encoding="utf-8")
    code, said = run("check", out)
    assert code == 0, said


def test_an_import_that_folded_read_scaled_and_turned_boxes_exports_and_imports_back_to_the_same_file(tmp_path: Path):
    images = tmp_path / "images"
    photo(images / "IMG_1.jpg", 30)
    (images / "IMG_1 (1).jpg").write_bytes((images / "IMG_1.jpg").read_bytes())
    photo(images / "turned.jpg", 90, (64, 48), orientation=6)
    photo(images / "half.jpg", 150, (32, 24))
    ann = coco_file(tmp_path / "c.json", [{"id": 1, "file_name": "IMG_1.jpg", "width": 64, "height": 48},
                                          {"id": 2, "file_name": "IMG_1 (1).jpg", "width": 64, "height": 48},
                                          {"id": 3, "file_name": "turned.jpg", "width": 64, "height": 48},
                                          {"id": 4, "file_name": "half.jpg", "width": 64, "height": 48}],
                    [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[5, 5, 21, 5, 21, 16, 5, 16]]},
                     {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 16, 11]},
                     {"id": 3, "image_id": 3, "category_id": 1, "bbox": [5, 5, 16, 11]},
                     {"id": 4, "image_id": 4, "category_id": 1, "bbox": [10, 10, 32, 22]}])
    first = tmp_path / "first"
    code, said = run("import-coco", ann, images, first, "--val-ratio", "0")
    assert code == 0, said
    summary = json.loads((first / "summary.json").read_text(encoding="utf-8"))
    assert (summary["same_photo"]["folded"], summary["boxes_from_segmentation"], summary["exif"]["annotated_on_raw"],
            summary["resolution_differs"]) == (1, 1, 1, 1)
    code, said = run("export-coco", first / "train.jsonl", first / "coco.json")
    assert code == 0, said
    back = tmp_path / "back"
    code, said = run("import-coco", first / "coco.json", first, back, "--val-ratio", "0")
    assert code == 0, said
    assert not (back / "errors.jsonl").read_text(encoding="utf-8")  # nothing left to fold, read, scale or turn
    code, said = run("export-coco", back / "train.jsonl", back / "coco.json")
    assert code == 0, said
    assert (back / "coco.json").read_bytes() == (first / "coco.json").read_bytes()
    assert [r.model_dump() for r in read_records(back / "train.jsonl")] == \
        [r.model_dump() for r in read_records(first / "train.jsonl")]
