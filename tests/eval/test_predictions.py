"""Prediction files: strict reading with file:line errors, failure flags, and pairing lines with ground-truth photos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bbuvl.data.schema import DatasetError, ImageRecord, ObjectAnn
from bbuvl.eval.predictions import PredictionLine, align_predictions, read_predictions


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((json.dumps(x, ensure_ascii=False) if not isinstance(x, str) else x) + "\n" for x in lines),
                    encoding="utf-8")
    return path


def line(image: str, objects=(), **extra) -> dict:
    return {"image": image, "width": 100, "height": 80, "objects": list(objects), "raw": None, "error": None, **extra}


def record(image: str, width: int = 100, height: int = 80) -> ImageRecord:
    return ImageRecord(images=[image], width=width, height=height, objects=[ObjectAnn(bbox_2d=[10, 10, 50, 40], desc="线缆")])


def test_reads_lines_and_defaults_a_missing_score_to_one(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [line("a.jpg", [{"bbox_2d": [1, 2, 3, 4], "label": "线缆"}]), "", line("b.jpg")])
    lines = read_predictions(path)
    assert [p.image for p in lines] == ["a.jpg", "b.jpg"] and [p.line for p in lines] == [1, 3]
    assert lines[0].objects == [{"bbox_2d": [1.0, 2.0, 3.0, 4.0], "label": "线缆", "score": 1.0}]


@pytest.mark.parametrize(("bad", "message"), [
    ("{not json", "p.jsonl:2: invalid JSON"),
    (json.dumps({"objects": []}), "p.jsonl:2: expected an object with an 'image'"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [1, 2, 3], "label": "x"}])), "p.jsonl:2: objects[0].bbox_2d"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [5, 2, 3, 4], "label": "x"}])), "x2 < x1"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [1, 2, 3, 4]}])), "objects[0]: missing 'label'"),
    (json.dumps(line("b.jpg", [{"bbox_2d": [1, 2, 3, 4], "label": "x", "score": "high"}])), "objects[0].score"),
])
def test_malformed_lines_are_errors_naming_file_and_line(tmp_path, bad, message):
    path = write_lines(tmp_path / "p.jsonl", [line("a.jpg"), bad])
    with pytest.raises(DatasetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_predictions(path)


def test_failed_means_error_or_unreadable_answer():
    def make(**kw) -> PredictionLine:
        return PredictionLine(line=1, image="a.jpg", width=None, height=None, objects=[], **kw)

    assert make(error="cannot decode image").failed
    assert make(raw="no idea").failed
    assert make(raw="[]").failed is False
    assert make(raw=None).failed is False  # head mode writes no text
    assert make(raw="[]", parse_ok=False).failed
    assert make(raw="garbage", parse_ok=True).failed is False


def test_pairs_absolute_and_relative_paths(tmp_path, monkeypatch):
    (tmp_path / "data" / "images").mkdir(parents=True)
    gt = tmp_path / "data" / "val.jsonl"
    records = [record("images/a.jpg"), record("images/b.jpg"), record("images/c.jpg")]
    pred_dir = tmp_path / "runs"
    pred_dir.mkdir()
    monkeypatch.chdir(tmp_path)
    preds = [
        PredictionLine(1, str(tmp_path / "data" / "images" / "a.jpg"), 100, 80, []),  # absolute
        PredictionLine(2, "images/b.jpg", 100, 80, []),  # as written in the dataset
        PredictionLine(3, os.path.join("data", "images", "c.jpg"), 100, 80, []),  # relative to the working folder
    ]
    a = align_predictions(records, gt, preds, pred_dir / "pred.jsonl")
    assert [p.line if p else None for p in a.predictions] == [1, 2, 3]
    assert a.unmatched == [] and a.by_name == 0 and a.notes() == []


def test_falls_back_to_a_unique_file_name(tmp_path):
    records = [record("images/a.jpg"), record("other/b.jpg"), record("more/b.jpg")]
    preds = [PredictionLine(1, "/elsewhere/a.jpg", 100, 80, []), PredictionLine(2, "/elsewhere/b.jpg", 100, 80, [])]
    a = align_predictions(records, tmp_path / "val.jsonl", preds)
    assert a.predictions[0].line == 1 and a.by_name == 1
    assert a.unmatched == [preds[1]]  # two ground-truth photos are called b.jpg: no guess
    assert a.predictions[1] is None and a.predictions[2] is None
    notes = " ".join(a.notes())
    assert "2 ground-truth photo(s) have no prediction line" in notes and "/elsewhere/b.jpg" in notes


def test_repeated_lines_keep_the_first(tmp_path):
    records = [record("a.jpg")]
    preds = [PredictionLine(1, "a.jpg", 100, 80, []), PredictionLine(7, "a.jpg", 100, 80, [])]
    a = align_predictions(records, tmp_path / "val.jsonl", preds)
    assert a.predictions[0].line == 1 and [p.line for p in a.repeated] == [7]


def test_predictions_on_a_resized_copy_are_scaled_to_the_ground_truth(tmp_path):
    records = [record("a.jpg", width=100, height=80)]
    preds = [PredictionLine(1, "a.jpg", 200, 160, [{"bbox_2d": [20.0, 20.0, 100.0, 80.0], "label": "线缆", "score": 0.5}])]
    a = align_predictions(records, tmp_path / "val.jsonl", preds)
    assert a.predictions[0].objects[0]["bbox_2d"] == [10.0, 10.0, 50.0, 40.0] and a.rescaled == 1
