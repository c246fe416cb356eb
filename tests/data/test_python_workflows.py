"""Every data workflow the CLI offers is one library call: split, teachers, COCO in and out, drawing."""

from __future__ import annotations

from bbuvl.data.coco_files import export_coco, import_coco
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.data.split import split_dataset
from bbuvl.data.teachers import write_teacher_pool
from bbuvl.eval.draw import LabelNamer
from bbuvl.eval.fonts import find_cjk_font
from bbuvl.eval.viz import draw_pictures


def _photos(path):
    return sorted(resolve_image(path, r.image).read_bytes() for r in read_records(path))


def test_split_rewrites_paths_to_resolve_from_the_new_folder(small_dataset, tmp_path):
    n_train, n_val = split_dataset(small_dataset / "train.jsonl", tmp_path / "split", val_ratio=0.25, seed=3)
    assert (n_train, n_val) == (6, 2)
    both = _photos(tmp_path / "split" / "train.jsonl") + _photos(tmp_path / "split" / "val.jsonl")
    assert sorted(both) == _photos(small_dataset / "train.jsonl")


def test_teacher_pool_is_written_with_resolving_paths(small_dataset, tmp_path):
    records, chosen = write_teacher_pool(small_dataset / "train.jsonl", tmp_path / "pool" / "teachers.jsonl", k=3)
    written = read_records(tmp_path / "pool" / "teachers.jsonl")
    assert [r.id for r in written] == [records[i].id for i in chosen] and len(chosen) == 3
    assert all(resolve_image(tmp_path / "pool" / "teachers.jsonl", r.image).is_file() for r in written)


def test_coco_round_trip_keeps_every_box(small_dataset, tmp_path):
    coco = export_coco(small_dataset / "train.jsonl", tmp_path / "coco" / "instances.json")
    assert len(coco["images"]) == 8
    result = import_coco(tmp_path / "coco" / "instances.json", tmp_path / "coco", tmp_path / "back", val_ratio=0, num_teachers=2,
                         allow_outside=True)  # export writes file_name relative to the COCO file: ../
    assert result.errors == [] and result.unknown_labels == {}
    back = read_records(tmp_path / "back" / "train.jsonl")
    original = read_records(small_dataset / "train.jsonl")
    assert sorted(len(r.objects) for r in back) == sorted(len(r.objects) for r in original)
    assert _photos(tmp_path / "back" / "train.jsonl") == _photos(small_dataset / "train.jsonl")


def test_pictures_are_drawn_from_python(small_dataset, tmp_path):
    font = find_cjk_font()
    written = draw_pictures(small_dataset / "val.jsonl", tmp_path / "png", font, LabelNamer(font, Hierarchy.load(None)))
    assert written == 2 and len(list((tmp_path / "png").glob("*.png"))) == 2
