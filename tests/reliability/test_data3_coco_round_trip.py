"""A COCO file exported, imported and exported again names every photo, box and label as the first did."""

from __future__ import annotations

from pathlib import Path

import pytest

from bbuvl.data.check import check_dataset
from bbuvl.data.coco_files import export_coco, import_coco
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import read_records, tile_origin, write_dataset
from bbuvl.data.tiling import TileSpec, tile_dataset
from bbuvl.synthetic.dataset import synthesize


def _dataset(tmp_path: Path, kind: str) -> Path:
    """A synthetic dataset JSONL: as rendered, cut into tiles, or with labels of its own (CJK, brackets) and a photo
    that holds no part."""
    synthesize(tmp_path / "synth", 4, 0, seed=1, size=(160, 120), num_teachers=0)
    if kind == "tiles":
        tile_dataset(tmp_path / "synth" / "train.jsonl", tmp_path / "tiles", TileSpec((2, 2), zoom=1.5), num_teachers=0)
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
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_export_import_export_writes_the_same_file(tmp_path: Path, kind: str):
    dataset = _dataset(tmp_path, kind)
    first = dataset.parent / "coco.json"  # beside the photos: file_name is the dataset's own images/...
    export_coco(dataset, first)
    import_coco(first, dataset.parent, tmp_path / "back", val_ratio=0, num_teachers=0)
    again = tmp_path / "back" / "coco.json"
    export_coco(tmp_path / "back" / "train.jsonl", again)
    assert again.read_bytes() == first.read_bytes()


def test_a_box_comes_back_as_it_was_typed(tmp_path: Path):
    path = _dataset(tmp_path, "as rendered")
    records = read_records(path)
    box = [18.4, 77.7, 113.3, 101.1]  # 113.3 - 18.4 + 18.4 is 113.30000000000001 in binary
    records[0] = records[0].model_copy(update={"objects": [records[0].objects[0].model_copy(update={"bbox_2d": box})]})
    write_dataset(path, records)
    export_coco(path, path.parent / "coco.json")
    import_coco(path.parent / "coco.json", path.parent, tmp_path / "back", val_ratio=0, num_teachers=0)
    back = {r.image: r for r in read_records(tmp_path / "back" / "train.jsonl")}[records[0].image]
    assert back.objects[0].bbox_2d == box


@pytest.mark.parametrize("own_ids", [True, False])
def test_a_part_of_an_imported_file_names_its_photos_as_the_whole_file_did(tmp_path: Path, own_ids: bool):
    """A photo's record id (synth's `train_00000`) comes back as `record_id`; a dataset without its own ids, as a COCO
    file from another tool imports, keeps the COCO ids themselves."""
    dataset = _dataset(tmp_path, "as rendered")
    if not own_ids:
        write_dataset(dataset, [r.model_copy(update={"id": None}) for r in read_records(dataset)])
    coco = export_coco(dataset, dataset.parent / "coco.json")
    import_coco(dataset.parent / "coco.json", dataset.parent, tmp_path / "back", val_ratio=0.5, num_teachers=0)
    key = "record_id" if own_ids else "id"
    names = {im[key]: im["file_name"] for im in coco["images"]}
    for part in ("train", "val"):
        again = export_coco(tmp_path / "back" / f"{part}.jsonl", tmp_path / "back" / f"{part}.json")
        assert again["images"] and all(names[im[key]] == im["file_name"] for im in again["images"]), again["images"]


def test_an_imported_tiled_dataset_keeps_each_photos_tiles_on_one_side_at_their_scale(tmp_path: Path):
    dataset = _dataset(tmp_path, "tiles")
    export_coco(dataset, dataset.parent / "coco.json")
    import_coco(dataset.parent / "coco.json", dataset.parent, tmp_path / "back", val_ratio=0.5, num_teachers=0)
    sides = {part: {tile_origin(r) for r in read_records(tmp_path / "back" / f"{part}.jsonl")} for part in ("train", "val")}
    assert sides["train"] and sides["val"] and None not in sides["train"] | sides["val"]
    assert not sides["train"] & sides["val"], sides
    tiles = sorted((r.image, r.magnified) for r in read_records(dataset))
    back = read_records(tmp_path / "back" / "train.jsonl") + read_records(tmp_path / "back" / "val.jsonl")
    assert sorted((r.image, r.magnified) for r in back) == tiles and None in {m for _, m in tiles} and len({m for _, m in tiles}) > 1
    assert not [p for p in check_dataset(tmp_path / "back", Hierarchy.load(None), decode_images=False)
                if p.severity == "error"]
