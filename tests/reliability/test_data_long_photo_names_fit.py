"""A photo named near the file system's 255-byte limit (80 Chinese characters are 240 bytes) is converted, imported
and tiled like any other: the names derived from it are cut to leave room for a tile's position, a hash and the
temporary each is first written as (data/names.py, `fit_name`). Its tile failed the whole `data tile` run, and
`data convert` and `data import-coco` left the photo out, each with "File name too long"."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.names import fit_name
from bbuvl.data.schema import read_records
from tests.data.test_hostile_inputs import LABEL, photo, vendor_text

LONG = "机房照片" * 20  # 80 characters, 240 bytes


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


def longest_name(folder: Path) -> int:
    return max(len(os.fsencode(p.name)) for p in folder.rglob("*"))


def test_photos_named_near_the_limit_are_converted_imported_and_tiled_whole(tmp_path):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    src = tmp_path / "export"
    for i, stem in enumerate((LONG, LONG[:-1] + "站", "ok")):
        photo(src / f"{stem}.jpg", colour=(60 * i, 90, 20))
        (src / f"{stem}.json").write_text(vendor_text(), encoding="utf-8")
    code, said = invoke("data", "convert", src, tmp_path / "conv", "--workers", "1", "--val-ratio", "0")
    assert code == 0 and not (tmp_path / "conv" / "errors.jsonl").read_text(encoding="utf-8"), said
    records = read_records(tmp_path / "conv" / "train.jsonl")
    assert len(records) == 3 and len({r.image for r in records}) == 3  # two long names cut alike stay two photos

    coco = {"images": [{"id": i + 1, "file_name": f"{stem}.jpg", "width": 64, "height": 48}
                       for i, stem in enumerate((LONG, LONG[:-1] + "站", "ok"))],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 5, 26, 35]} for i in (1, 2, 3)],
            "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    code, said = invoke("data", "import-coco", tmp_path / "coco.json", src, tmp_path / "imported", "--val-ratio", "0")
    assert code == 0 and len(read_records(tmp_path / "imported" / "train.jsonl")) == 3, said

    code, said = invoke("data", "tile", tmp_path / "conv", tmp_path / "tiles", "--grid", "2x2", "--overlap", "0")
    assert code == 0, said
    tiles = [r.image for r in read_records(tmp_path / "tiles" / "train.jsonl")]
    assert len(tiles) == len(set(tiles)) and sum(t.endswith("__0_0_64x48.jpg") for t in tiles) == 3  # each whole photo
    assert max(map(longest_name, (tmp_path / "conv", tmp_path / "imported", tmp_path / "tiles"))) <= limit - 30


def test_a_cut_name_is_one_sources_alone_and_keeps_its_suffix():
    a, b = fit_name(f"images/{LONG}.jpg", "a"), fit_name(f"images/{LONG}.jpg", "b")
    assert a != b and a == fit_name(f"images/{LONG}.jpg", "a")
    assert a.startswith("images/机房") and a.endswith(".jpg") and len(Path(a).name.encode()) <= 160
    assert fit_name("images/short.jpg", "a") == "images/short.jpg"
    assert len(fit_name("x." + "y" * 300, "s").encode()) <= 160  # no suffix to keep


def test_crops_of_a_photo_named_near_the_limit_are_written(tmp_path):
    from bbuvl.fewshot.crops import write_crops

    photo(tmp_path / f"{LONG}.jpg")
    (tmp_path / "d.jsonl").write_text(json.dumps({"images": [f"{LONG}.jpg"], "width": 64, "height": 48, "objects": [
        {"bbox_2d": [4, 5, 30, 40], "desc": LABEL}, {"bbox_2d": [30, 5, 60, 40], "desc": LABEL}]}, ensure_ascii=False)
        + "\n", encoding="utf-8")
    assert write_crops(tmp_path / "d.jsonl", tmp_path / "crops") == {LABEL: 2}  # "File name too long" before
    assert len(list((tmp_path / "crops" / LABEL).iterdir())) == 2
