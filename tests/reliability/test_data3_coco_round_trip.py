"""A COCO file exported, imported and exported again names every photo, box and label as the first did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bbuvl.data.coco_files import export_coco, import_coco
from bbuvl.data.schema import read_records, write_dataset
from bbuvl.data.tiling import TileSpec, tile_dataset
from bbuvl.synthetic.dataset import synthesize


def _dataset(tmp_path: Path, kind: str) -> Path:
    """A synthetic dataset JSONL: as rendered, cut into tiles, or with labels of its own (CJK, brackets) and a photo
    that holds no part."""
    synthesize(tmp_path / "synth", 4, 0, seed=1, size=(160, 120), num_teachers=0)
    if kind == "tiles":
        tile_dataset(tmp_path / "synth" / "train.jsonl", tmp_path / "tiles", TileSpec((2, 2)), num_teachers=0)
        return tmp_path / "tiles" / "train.jsonl"
    path = tmp_path / "synth" / "train.jsonl"
    if kind == "own labels":
        records = read_records(path)
        labels = ["机柜/自定义[标签]", "-天线/室外"]
        records = [r.model_copy(update={"objects": [o.model_copy(update={"desc": labels[i % 2]})
                                                    for i, o in enumerate(r.objects[:4])]}) for r in records]
        records[1] = records[1].model_copy(update={"objects": []})
        write_dataset(path, records)
    return path


@pytest.mark.parametrize("kind", ["as rendered", "tiles", "own labels"])
def test_export_import_export_writes_the_same_file(tmp_path: Path, kind: str):
    dataset = _dataset(tmp_path, kind)
    first = dataset.parent / "coco.json"  # beside the photos: file_name is the dataset's own images/...
    export_coco(dataset, first)
    import_coco(first, dataset.parent, tmp_path / "back", val_ratio=0, num_teachers=0)
    again = tmp_path / "back" / "coco.json"
    export_coco(tmp_path / "back" / "train.jsonl", again)
    assert again.read_bytes() == first.read_bytes()


def test_a_part_of_an_imported_file_keeps_its_photos_ids_and_names(tmp_path: Path):
    dataset = _dataset(tmp_path, "as rendered")
    first = dataset.parent / "coco.json"
    coco = export_coco(dataset, first)
    import_coco(first, dataset.parent, tmp_path / "back", val_ratio=0.5, num_teachers=0)
    ids = {im["id"]: im["file_name"] for im in coco["images"]}
    for part in ("train", "val"):
        again = export_coco(tmp_path / "back" / f"{part}.jsonl", tmp_path / "back" / f"{part}.json")
        assert again["images"] and all(ids[im["id"]] == im["file_name"] for im in again["images"])
    assert json.loads(first.read_text(encoding="utf-8"))["images"] == coco["images"]
