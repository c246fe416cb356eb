"""COCO annotations that carry only a `segmentation` (an instance-segmentation export: polygons, or an RLE mask,
compressed or as run lengths) get the box of its extent, as COCO's own boxes are, and `data import-coco` says how many;
one with neither a bbox nor a usable segmentation is refused naming its entry and photo. Every such annotation was
refused before ("a detection file gives each object's bbox"), so a segmentation export imported as photos with no
parts, or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from faster_coco_eval.core import mask
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.data import app
from bbuvl.data.schema import read_records

LABEL = "线缆"
SIZE = (64, 48)


def run(*args: object) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed, joined onto one line."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def block_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """A SIZE mask (rows, columns) whose pixels x1 <= x < x2, y1 <= y < y2 are set."""
    a = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    a[y1:y2, x1:x2] = 1
    return a


def run_lengths(a: np.ndarray) -> list[int]:
    """The uncompressed COCO RLE of `a`: alternating runs of 0 and 1, column by column, starting with 0."""
    flat, counts, current, length = a.flatten(order="F"), [], 0, 0
    for v in flat:
        if v != current:
            counts.append(length)
            current, length = v, 0
        length += 1
    return counts + [length]


def import_file(tmp_path: Path, segmentations: list[object]) -> tuple[int, str, Path]:
    """Import one photo whose annotations are `segmentations` (no bbox; None: neither key), besides one with a bbox."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", SIZE, (40, 90, 160)).save(tmp_path / "images" / "a.jpg", "JPEG", quality=95)
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [40, 30, 10, 10]}]
    for k, segmentation in enumerate(segmentations, 2):
        annotations.append({"id": k, "image_id": 1, "category_id": 1, "area": 1, "iscrowd": 0,
                            **({} if segmentation is None else {"segmentation": segmentation})})
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": SIZE[0], "height": SIZE[1]}],
            "annotations": annotations, "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "c.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out"
    code, said = run("import-coco", tmp_path / "c.json", tmp_path / "images", out, "--val-ratio", "0")
    return code, said, out


def errors_of(out: Path) -> list[dict]:
    """errors.jsonl of a dataset folder."""
    return [json.loads(line) for line in (out / "errors.jsonl").read_text(encoding="utf-8").splitlines()]


def test_polygons_and_both_kinds_of_rle_give_the_box_of_their_extent_and_the_count_is_said(tmp_path: Path):
    compressed = mask.encode(np.asfortranarray(block_mask(20, 5, 27, 9)))["counts"].decode("ascii")
    segmentations = [
        [[2.5, 3, 12, 3, 12, 14.5], [4, 20, 6, 20, 5, 22]],  # two polygons: one object in two visible pieces
        {"size": [SIZE[1], SIZE[0]], "counts": compressed},
        {"size": [SIZE[1], SIZE[0]], "counts": run_lengths(block_mask(1, 30, 9, 44))},
    ]
    code, said, out = import_file(tmp_path, segmentations)
    assert code == 0, said
    assert "3 box(es) read from their annotation's segmentation (no bbox given, or one of no width and height)" in said, said
    (record,) = read_records(out / "train.jsonl")
    assert sorted(o.bbox_2d for o in record.objects) == [[1, 30, 9, 44], [2.5, 3, 12, 22], [20, 5, 27, 9], [40, 30, 50, 40]]
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["boxes_from_segmentation"] == 3
    assert not errors_of(out)
    code, said = run("check", out)
    assert code == 0, said


def test_an_annotation_with_neither_a_box_nor_a_usable_segmentation_is_refused_naming_its_entry_and_photo(tmp_path: Path):
    segmentations = [
        None,
        {"size": [SIZE[0], SIZE[1]], "counts": run_lengths(block_mask(1, 1, 5, 5))},  # [width, height]: another frame
        {"size": [SIZE[1], SIZE[0]], "counts": "not rle!"},
        {"size": [SIZE[1], SIZE[0]], "counts": [5, 3]},
        {"size": [SIZE[1], SIZE[0]], "counts": ""},
        [[1, 2, 3, 4]],
    ]
    code, said, out = import_file(tmp_path, segmentations)
    assert code == 0, said
    assert "box(es) read from" not in said, said
    errors = errors_of(out)
    assert [e["entry"] for e in errors] == [f"annotations[{k}]" for k in range(1, 7)]
    assert all(e["file"].endswith("a.jpg") and e["image_id"] == 1 for e in errors), errors
    reasons = [e["reason"] for e in errors]
    assert reasons[0] == "neither a bbox nor a segmentation: where the object is is not given"
    assert reasons[1] == "no bbox, and its segmentation gives none: its RLE size [64, 48] is not the image's [height, " \
                         "width], [48, 64]"
    assert reasons[2].startswith("no bbox, and its segmentation gives none: its RLE counts do not decode (")
    assert reasons[3] == "no bbox, and its segmentation gives none: its RLE run lengths add up to 8 pixels, not the " \
                         "image's 3072"
    assert reasons[4] == "no bbox, and its segmentation gives none: its RLE mask holds no pixel"
    assert reasons[5] == "no bbox, and its segmentation gives none: polygon 0 [1, 2, 3, 4] is not x, y pairs of finite " \
                         "numbers, at least three points"
    (record,) = read_records(out / "train.jsonl")
    assert [o.bbox_2d for o in record.objects] == [[40, 30, 50, 40]]
