"""Sequences of data commands on hostile inputs: what one command writes, the next reads and `data check` passes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.schema import read_records
from tests.data.test_hostile_inputs import LABEL, photo


def invoke(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


def test_import_coco_keeps_one_of_two_files_of_the_same_bytes_and_the_import_passes_its_check(tmp_path: Path):
    src = tmp_path / "src"
    photo(src / "a.jpg")
    photo(src / "images" / "a.jpg")  # the same bytes, as an export beside its dataset's copy names it
    photo(src / "b.jpg", colour=(0, 90, 0))
    names = ["a.jpg", "images/a.jpg", "b.jpg"]
    coco = {"images": [{"id": i + 1, "file_name": n, "width": 64, "height": 48} for i, n in enumerate(names)],
            "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 5, 26, 35]} for i in range(3)],
            "categories": [{"id": 1, "name": LABEL}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco, ensure_ascii=False), encoding="utf-8")
    code, said = invoke("data", "import-coco", tmp_path / "coco.json", src, tmp_path / "out", "--val-ratio", "0.5")
    assert code == 0, said
    kept = read_records(tmp_path / "out" / "train.jsonl") + read_records(tmp_path / "out" / "val.jsonl")
    assert sorted(r.id for r in kept) == ["1", "3"]
    errors = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").open(encoding="utf-8")]
    assert [(e["image_id"], e["reason"].split(":")[0]) for e in errors] == [("2", "the same bytes as " + str(src / "a.jpg")
                                                                              + " (image id 1)")]
    code, said = invoke("data", "check", tmp_path / "out")
    assert code == 0, said
