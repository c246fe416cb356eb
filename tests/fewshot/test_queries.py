"""Query sources: folder tree, dataset JSONL crops (margin, level), predictions file crops (errors reported)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from bbuvl.fewshot.queries import is_predictions_file, iter_queries


def test_folder_tree_labels_are_folder_paths_and_root_files_have_none(tmp_path):
    for rel in ("a/1.png", "b/c/2.png", "3.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / rel)
    items = list(iter_queries(tmp_path, []))
    assert {it.path.name: it.label for it in items} == {"1.png": "a", "2.png": "b/c", "3.png": None}


def test_dataset_jsonl_gives_one_crop_per_object_with_margin_and_level(part_crops):
    problems: list[str] = []
    val = part_crops.data / "val.jsonl"
    items = list(iter_queries(val, problems, margin=0.1, level=1))
    first = json.loads(val.read_text(encoding="utf-8").splitlines()[0])
    assert problems == []
    assert len(items) == sum(len(json.loads(line)["objects"]) for line in val.read_text(encoding="utf-8").splitlines())
    assert items[0].box == tuple(first["objects"][0]["bbox_2d"]) and items[0].margin == 0.1
    assert items[0].label == first["objects"][0]["desc"].split("/")[0]
    assert items[0].path == (part_crops.data / first["images"][0]).resolve()
    assert items[0].origin == f"{val}:1 objects[0]"


def test_predictions_file_crops_detections_and_reports_failed_lines(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (50, 40)).save(img)
    lines = [
        {"image": str(img), "width": 50, "height": 40, "error": None, "objects": [
            {"bbox_2d": [1, 2, 20, 30], "label": "标签贴纸", "score": 0.9},
            {"bbox_2d": [5, 5, 9, 9], "label": "线缆", "score": 0.2},
            {"bbox_2d": [5, 5, 9], "label": "线缆", "score": 0.8}]},
        {"image": "b.png", "width": 0, "height": 0, "objects": [], "error": "cannot decode image"},
        "not json",
    ]
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    assert is_predictions_file(pred)
    problems: list[str] = []
    items = list(iter_queries(pred, problems, margin=0.0, min_score=0.5))
    assert [(it.box, it.label) for it in items] == [((1, 2, 20, 30), None)]
    assert items[0].origin == f"{pred}:1 objects[0]"
    assert any(f"{pred}:1: objects[2]" in p for p in problems)
    assert any(f"{pred}:2: prediction failed for b.png: cannot decode image" in p for p in problems)
    assert any(f"{pred}:3: invalid JSON" in p for p in problems)


def test_bad_query_paths_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        iter_queries(tmp_path / "missing", [])
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="not '.txt'"):
        iter_queries(tmp_path / "x.txt", [])
    with pytest.raises(ValueError, match="margin"):
        iter_queries(tmp_path, [], margin=-1)
    Image.new("RGB", (4, 4)).save(tmp_path / "one.jpg")
    assert [it.path.name for it in iter_queries(tmp_path / "one.jpg", [])] == ["one.jpg"]


def test_single_image_query_and_dataset_errors_are_named_by_line(tmp_path: Path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"images": ["x.png"], "width": 4, "height": 4, "objects": [{"bbox_2d": [0,0,2,2], "label": "a"}]}\n',
                    encoding="utf-8")
    problems: list[str] = []
    assert list(iter_queries(data, problems)) == []
    assert problems and problems[0].startswith(f"{data}:1:") and "desc" in problems[0]


def test_predictions_file_names_photos_relative_to_the_predict_input(tmp_path):
    photos = tmp_path / "photos"
    (photos / "site").mkdir(parents=True)
    Image.new("RGB", (50, 40)).save(photos / "site" / "a.png")
    (photos / "link.png").symlink_to(photos / "site" / "a.png")
    pred = tmp_path / "runs" / "pred.jsonl"
    pred.parent.mkdir()
    pred.with_name("pred.jsonl.predict.json").write_text(json.dumps(
        {"input": str(photos), "checkpoint": "/ckpt", "mode": "head", "tool": "bbuvl predict"}), encoding="utf-8")
    box = {"bbox_2d": [1, 2, 20, 30], "label": "标签贴纸", "score": 0.9}
    pred.write_text("".join(json.dumps({"image": name, "width": 50, "height": 40, "error": None, "objects": [box]}) + "\n"
                            for name in ("site/a.png", "link.png")), encoding="utf-8")
    items = list(iter_queries(pred, []))
    assert [it.path for it in items] == [photos.resolve() / "site" / "a.png", photos.resolve() / "link.png"]
