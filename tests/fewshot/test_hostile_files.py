"""`bbuvl fewshot` on damaged files it reads: a cache database written by something else or damaged, predictions whose
scores are not numbers."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bbuvl.fewshot.backbones import PixelBackbone
from bbuvl.fewshot.cache import CACHE_FILE, EmbeddingCache
from bbuvl.fewshot.embed import EmbedReport, ImageItem, embed_items
from tests.fewshot.test_hostile_input import invoke, photos


def test_a_cache_file_of_another_program_is_refused_naming_it_and_left_as_it_was(tmp_path):
    support = photos(tmp_path / "support", {"a": 1, "b": 1})
    (tmp_path / "cache").mkdir()
    with sqlite3.connect(tmp_path / "cache" / CACHE_FILE) as db:
        db.execute("CREATE TABLE embeddings (id INTEGER, data TEXT)")
        db.execute("INSERT INTO embeddings VALUES (1, 'theirs')")
    db.close()
    code, said = invoke("classify", "--support", support, "--query", support, "--backbone", "pixels:8",
                        "--out", tmp_path / "o.csv", "--cache", tmp_path / "cache")
    # Before: sqlite3.OperationalError 'no such column: key', a traceback.
    assert code == 2 and f"{tmp_path / 'cache' / CACHE_FILE}: not an embedding cache" in said, said
    assert not (tmp_path / "o.csv").exists()
    with sqlite3.connect(tmp_path / "cache" / CACHE_FILE) as db:
        assert db.execute("SELECT * FROM embeddings").fetchall() == [(1, "theirs")]
    db.close()


def test_damaged_cache_entries_are_embedded_again_not_used(tmp_path):
    support = photos(tmp_path / "support", {"a": 1, "b": 1})
    items = [ImageItem(p) for p in sorted(support.rglob("*.png"))]
    bb = PixelBackbone(8)
    cache = EmbeddingCache(tmp_path / "cache")
    good = np.concatenate([v for _, v in embed_items(items, bb, cache)])
    with cache._db:  # one entry cut to a single float, as a torn write or a hand edit leaves it
        key = cache._db.execute("SELECT key FROM embeddings LIMIT 1").fetchone()[0]
        cache._db.execute("UPDATE embeddings SET vec = ? WHERE key = ?", (np.zeros(1, np.float32).tobytes(), key))
    report = EmbedReport()
    again = np.concatenate([v for _, v in embed_items(items, bb, cache, report=report)])
    # Before: the 1-float vector was taken as the photo's embedding (a broken batch, or every query Unknown).
    assert (report.embedded, report.cached) == (1, 1)
    np.testing.assert_array_equal(again, good)
    report = EmbedReport()
    list(embed_items(items, bb, cache, report=report))
    assert (report.embedded, report.cached) == (0, 2)  # the entry was written anew


@pytest.mark.parametrize("score", ["high", [0.9], float("nan"), True])
def test_a_detection_score_that_is_not_a_number_is_skipped_naming_its_line(tmp_path, score):
    support = photos(tmp_path / "support", {"a": 1, "b": 1})
    Image.new("RGB", (40, 30), (1, 2, 3)).save(tmp_path / "p.png")
    line = {"image": "p.png", "width": 40, "height": 30,
            "objects": [{"bbox_2d": [0, 0, 20, 10], "label": "a", "score": 0.9},
                        {"bbox_2d": [0, 0, 10, 10], "label": "a", "score": score}]}
    (tmp_path / "pred.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    code, said = invoke("classify", "--support", support, "--query", tmp_path / "pred.jsonl", "--backbone", "pixels:8",
                        "--out", tmp_path / "o.csv", "--no-cache")
    # Before: 'could not convert string to float' naming no file, a TypeError traceback, a NaN box dropped unsaid,
    # or true taken as a score of 1.
    assert code == 0, said
    assert f"{tmp_path / 'pred.jsonl'}:1: objects[1]: score {json.dumps(score)} is not a finite number" in said, said
    assert len((tmp_path / "o.csv").read_text(encoding="utf-8").splitlines()) == 2  # header + the valid box


def test_objects_that_are_not_a_list_are_named_as_such(tmp_path):
    support = photos(tmp_path / "support", {"a": 1})
    Image.new("RGB", (40, 30), (1, 2, 3)).save(tmp_path / "p.png")
    line = {"image": "p.png", "objects": {"bbox_2d": [0, 0, 10, 10]}}
    (tmp_path / "pred.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    code, said = invoke("classify", "--support", support, "--query", tmp_path / "pred.jsonl", "--backbone", "pixels:8",
                        "--out", tmp_path / "o.csv", "--no-cache")
    # Before: 'objects[0]: expected a bbox_2d', the dict's first key taken for a detection.
    assert code == 2 and f"{tmp_path / 'pred.jsonl'}:1: 'objects' must be an array of detections, got an object" in said, said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_with_a_class_named_like_mathtext_draws_its_plots(tmp_path):
    support = photos(tmp_path / "support", {r"$\frac$": 2, "b": 2})
    code, said = invoke("eval", "--support", support, "--query", support, "--backbone", "pixels:8", "--shots", "1",
                        "--thresholds", "0.5", "--out", tmp_path / "res", "--no-cache")
    # Before: matplotlib's 'Expected \frac{num}{den}' at the confusion plot, after every embedding was done.
    assert code == 0, said
    assert Image.open(tmp_path / "res" / "confusion_best.png").format == "PNG"


def test_label_leaves_out_a_box_empty_inside_its_photo_not_the_photos_other_boxes(tmp_path):
    from bbuvl.data.schema import read_records

    support = photos(tmp_path / "support", {"线缆": 1, "标签贴纸": 1})
    Image.new("RGB", (40, 30), (1, 2, 3)).save(tmp_path / "p.png")
    line = {"image": "p.png", "width": 40, "height": 30,
            "objects": [{"bbox_2d": [0, 0, 10, 10], "label": "线缆", "score": 0.9},
                        {"bbox_2d": [5, 5, 5, 5], "label": "线缆", "score": 0.9}]}
    (tmp_path / "pred.jsonl").write_text(json.dumps(line, ensure_ascii=False) + "\n", encoding="utf-8")
    code, said = invoke("label", "--support", support, "--predictions", tmp_path / "pred.jsonl", "--backbone", "pixels:8",
                        "--out", tmp_path / "o.jsonl", "--threshold", "-1", "--no-cache")
    assert code == 0, said
    assert f"{tmp_path / 'pred.jsonl'}:1 objects[1]: {tmp_path / 'p.png'}: box [5, 5, 5, 5] is empty" in said, said
    # Before: '0 photos (1 left out)', the valid box dropped with the empty one and not a word said of it.
    [record] = read_records(tmp_path / "o.jsonl")
    assert [o.bbox_2d for o in record.objects] == [[0, 0, 10, 10]]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_hidden_files_and_folders_are_no_support_class_nor_query(tmp_path):
    support = photos(tmp_path / "support", {"a": 2, "b": 2})
    (support / "a" / ".ipynb_checkpoints").mkdir()  # Jupyter writes these beside every photo a notebook opened
    (support / "a" / ".ipynb_checkpoints" / "0-checkpoint.png").write_bytes((support / "b" / "0.png").read_bytes())
    (support / "b" / "._0.png").write_bytes(b"\x00\x05\x16\x07 Mac OS X")  # macOS's companion of 0.png in a zip
    code, said = invoke("eval", "--support", support, "--query", support, "--backbone", "pixels:8", "--shots", "1",
                        "--thresholds", "0.5", "--out", tmp_path / "res", "--no-cache")
    assert code == 0, said
    summary = json.loads((tmp_path / "res" / "summary.json").read_text(encoding="utf-8"))
    # Before: 'a/.ipynb_checkpoints' was a third class, taking the answers of b's photo, and ._0.png was reported
    # unreadable twice (as a support image and as a query).
    assert summary["classes"] == ["a", "b"] and summary["queries"]["evaluated"] == 4, summary
    assert "._0.png" not in said and "ipynb" not in said, said


@pytest.mark.parametrize("cut", ["half", "all"])
def test_a_backbone_whose_weights_are_cut_short_is_refused_naming_the_file(tmp_path, tiny_backbones, cut):
    import shutil

    folder = tmp_path / "clip"
    shutil.copytree(tiny_backbones["clip"], folder)
    [weights] = folder.glob("*.safetensors")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if cut == "half" else b"")
    support = photos(tmp_path / "support", {"a": 1})
    code, said = invoke("classify", "--support", support, "--query", support, "--backbone", folder,
                        "--out", tmp_path / "o.csv", "--no-cache", "--device", "cpu")
    # Before: safetensors' traceback, 'incomplete metadata, file not fully covered' or 'header too small'.
    assert code == 2 and f"error: {weights}: " in said and "cut short?" in said, said
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_query_record_whose_photo_is_another_size_is_skipped_naming_both_sizes(tmp_path):
    support = photos(tmp_path / "support", {"a": 1, "b": 1})
    Image.new("RGB", (40, 30), (1, 2, 3)).save(tmp_path / "p.png")  # resized to half after it was labelled at 80x60
    Image.new("RGB", (40, 30), (3, 2, 1)).save(tmp_path / "q.png")
    lines = [{"images": ["p.png"], "width": 80, "height": 60, "objects": [{"bbox_2d": [40, 30, 80, 60], "desc": "a"}]},
             {"images": ["q.png"], "width": 40, "height": 30, "objects": [{"bbox_2d": [0, 0, 20, 15], "desc": "b"}]}]
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    code, said = invoke("eval", "--support", support, "--query", tmp_path / "val.jsonl", "--backbone", "pixels:8",
                        "--shots", "1", "--thresholds", "0.5", "--out", tmp_path / "res", "--no-cache")
    assert code == 0, said
    # Before: the box was clipped to the 40x30 photo and its corner pixel evaluated as an 'a', not a word said.
    assert f"{tmp_path / 'val.jsonl'}:1 objects[0]: {tmp_path / 'p.png'}: the record says 80x60, the image is 40x30" in said
    summary = json.loads((tmp_path / "res" / "summary.json").read_text(encoding="utf-8"))
    assert summary["queries"]["evaluated"] == 1, summary["queries"]


def test_thresholds_named_alike_are_one_threshold():
    from bbuvl.fewshot.evaluate import parse_thresholds, threshold_name

    # Before: two thresholds, both written as 0.123457 and as 0.00 / -0.00, their tables one over the other.
    for text, names in (("0.1234567,0.1234568", ["0.123457"]), ("-0,0,1e-9", ["0.00"])):
        assert [threshold_name(t) for t in parse_thresholds(text)] == names


def test_classify_writes_a_truth_typed_otherwise_as_its_class(tmp_path):
    import csv
    import unicodedata

    nfc, nfd = unicodedata.normalize("NFC", "câble"), unicodedata.normalize("NFD", "câble")
    support = photos(tmp_path / "support", {nfc: 1, "b": 1})
    query = photos(tmp_path / "query", {nfd: 1, "b ": 1})  # as macOS writes the folder name; a trailing space
    code, said = invoke("classify", "--support", support, "--query", query, "--backbone", "pixels:8",
                        "--out", tmp_path / "o.csv", "--threshold", "-1", "--no-cache")
    assert code == 0, said
    with open(tmp_path / "o.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # Before: truth 'câble' decomposed and 'b ', never equal to the answers 'câble' and 'b' of the same classes.
    assert sorted((row["truth"], row["label"]) for row in rows) == [("b", "b"), (nfc, nfc)]


@pytest.mark.parametrize("given", ["missing photos", "a dataset"])
def test_label_that_labels_no_photo_is_an_error_naming_the_first_problem_and_keeps_the_dataset_there(tmp_path, given):
    support = photos(tmp_path / "support", {"线缆": 1, "标签贴纸": 1})
    box = {"bbox_2d": [0, 0, 10, 10], "score": 0.9}
    if given == "missing photos":  # predictions carried to another machine without their photos
        lines = [{"image": f"gone{i}.png", "width": 40, "height": 30, "objects": [{**box, "label": "线缆"}]} for i in range(3)]
        first = f"{tmp_path / 'gone0.png'}: image file not found"
    else:  # a dataset JSONL given as --predictions
        lines = [{"images": [f"p{i}.png"], "width": 40, "height": 30, "objects": [{**box, "desc": "线缆"}]} for i in range(3)]
        first = "a dataset record ('images', 'objects' with 'desc'), not a prediction line"
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "labelled.jsonl"
    code, said = invoke("label", "--support", support, "--predictions", pred, "--backbone", "pixels:8", "--out", out,
                        "--threshold", "-1", "--no-cache")
    assert not out.exists()
    # Before: exit 0, 'wrote labelled.jsonl: 0 photos (3 left out); check it with bbuvl data check', an empty dataset.
    assert code == 2 and f"{pred}: no query could be labelled (3 problem(s), the first:" in said and first in said, said

    # A dataset an earlier run wrote there is kept whole: the failed run writes nothing over it.
    out.write_text('{"images": ["theirs.png"], "width": 4, "height": 3, "objects": []}\n', encoding="utf-8")
    before = out.read_bytes()
    code, said = invoke("label", "--support", support, "--predictions", pred, "--backbone", "pixels:8", "--out", out,
                        "--threshold", "-1", "--no-cache", "--overwrite")
    assert code == 2 and out.read_bytes() == before, said


def test_label_into_a_file_named_other_than_jsonl_is_refused_before_any_work(tmp_path):
    support = photos(tmp_path / "support", {"线缆": 1, "标签贴纸": 1})
    (tmp_path / "pred.jsonl").write_text("", encoding="utf-8")
    code, said = invoke("label", "--support", support, "--predictions", tmp_path / "pred.jsonl", "--backbone", "pixels:8",
                        "--out", tmp_path / "labelled.csv", "--no-cache")
    # Before: a dataset's JSONL lines under the name labelled.csv, which `data check` and spreadsheets misread.
    assert code == 2 and f"--out {tmp_path / 'labelled.csv'}: fewshot label writes a dataset JSONL; name it .jsonl" in said, said
    assert not (tmp_path / "labelled.csv").exists()
