"""`fewshot classify` output files and `fewshot label` turning detections into a dataset `data check` accepts."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli.fewshot import app
from bbuvl.data.check import check_dataset
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.fewshot.classifier import confidence_band
from bbuvl.fewshot.support import UNKNOWN


def invoke(*args, code: int | None = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert code is None or result.exit_code == code, result.output + repr(result.exception)
    return result.output


@pytest.fixture
def predictions(part_crops, tmp_path) -> Path:
    """val.jsonl as `bbuvl predict` output: detector labels and scores, plus a failed line, a missing photo,
    a box twice, and a box sticking out of its photo."""
    val = part_crops.data / "val.jsonl"
    lines = []
    for k, record in enumerate(read_records(val)):
        objects = [{"bbox_2d": o.bbox_2d, "label": o.desc, "score": round(0.5 + 0.04 * (i % 10), 2)}
                   for i, o in enumerate(record.objects)]
        if k == 0:
            objects.append(dict(objects[0], score=0.3))  # the same box again, lower score
            x1, y1, _, _ = objects[1]["bbox_2d"]
            objects.append({"bbox_2d": [x1, y1, record.width + 25, record.height + 9], "label": "线缆", "score": 0.95})
        lines.append({"image": str(resolve_image(val, record.image)), "width": record.width, "height": record.height,
                      "objects": objects, "raw": "", "error": None})
    lines.append({"image": str(tmp_path / "gone.jpg"), "width": 320, "height": 240, "objects": [], "error": "image file not found"})
    lines.append({"image": str(tmp_path / "also_gone.jpg"), "width": 320, "height": 240, "error": None,
                  "objects": [{"bbox_2d": [1, 1, 30, 30], "label": "线缆", "score": 0.9}]})
    path = tmp_path / "pred" / "pred.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_classify_writes_one_row_per_query_with_answer_scores_and_confidence(part_crops, tmp_path, suffix):
    out = tmp_path / f"pred{suffix}"
    output = invoke("classify", "--support", part_crops.support, "--query", part_crops.query, "--backbone", "pixels:8",
                    "--threshold", "0.6", "--shots", "3", "--out", out, "--no-cache")
    n = sum(1 for _ in part_crops.query.rglob("*.png"))
    if suffix == ".csv":
        with out.open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    else:
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert all(set(r["scores"]) == set(part_crops.known) for r in rows)
    assert len(rows) == n and f"{n} queries" in output
    for r in rows:
        score = float(r["score"])
        assert r["label"] == (r["best_class"] if score >= 0.6 else UNKNOWN)
        assert r["confidence"] in ("high", "medium", "low")
        assert float(r["margin"]) == pytest.approx(score - float(r["second_score"]), abs=2e-6)


def test_classify_reads_a_predictions_file_as_crops(part_crops, predictions, tmp_path):
    out = tmp_path / "crops.jsonl"
    invoke("classify", "--support", part_crops.support, "--query", predictions, "--backbone", "pixels:8",
           "--min-score", "0.6", "--out", out, "--no-cache")
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and all(r["box"] is not None and r["truth"] is None for r in rows)
    assert all(str(predictions) in r["query"] for r in rows)


@pytest.mark.parametrize("unknown", ["drop", "flag"])
def test_label_writes_a_dataset_that_data_check_accepts(part_crops, predictions, tmp_path, unknown):
    out = tmp_path / "labelled" / "auto.jsonl"
    output = invoke("label", "--predictions", predictions, "--support", part_crops.support, "--backbone", "pixels:8",
                    "--threshold", "0.55", "--unknown", unknown, "--out", out, "--cache", tmp_path / "cache")
    problems = check_dataset(out)
    assert [str(p) for p in problems if p.severity == "error"] == []
    records = read_records(out)
    n_val = len(read_records(part_crops.data / "val.jsonl"))
    assert len(records) == n_val  # both missing photos left out, every real one kept
    assert "gone.jpg" in output and "also_gone.jpg" in output
    objects = [o for r in records for o in r.objects]
    fewshot = [o for o in objects if o.extra.get("fewshot") != UNKNOWN]
    assert fewshot and all(o.desc in part_crops.known for o in fewshot)
    assert all(float(o.extra["fewshot_score"]) >= 0.55 for o in fewshot)
    flagged = [o for o in objects if o.extra.get("fewshot") == UNKNOWN]
    assert bool(flagged) == (unknown == "flag")
    assert all(float(o.extra["fewshot_score"]) < 0.55 for o in flagged)
    assert "duplicate" in output and "clipped" in output
    first = records[0]
    assert all(o.bbox_2d[2] <= first.width and o.bbox_2d[3] <= first.height for o in first.objects)


def test_label_refuses_support_classes_outside_the_hierarchy_before_embedding(part_crops, predictions, tmp_path):
    support = tmp_path / "support"
    shutil.copytree(part_crops.support, support)
    shutil.copytree(support / part_crops.known[0], support / "新型连接器")
    output = invoke("label", "--predictions", predictions, "--support", support, "--backbone", "no/such/backbone",
                    "--out", tmp_path / "x.jsonl", code=2)
    assert "新型连接器" in output and "--hierarchy" in output
    assert not (tmp_path / "x.jsonl").exists()


def test_label_refuses_predictions_naming_one_photo_on_two_lines_before_embedding(part_crops, predictions, tmp_path):
    # Two predict outputs joined with `cat` wrote the photo twice, into a dataset `data check` then refused
    lines = predictions.read_text(encoding="utf-8").splitlines()
    joined = tmp_path / "joined.jsonl"
    joined.write_text("\n".join(lines + lines[:1]) + "\n", encoding="utf-8")
    out = tmp_path / "auto.jsonl"
    output = invoke("label", "--predictions", joined, "--support", part_crops.support, "--backbone", "pixels:8",
                    "--out", out, "--cache", tmp_path / "cache", code=2)
    photo = json.loads(lines[0])["image"]
    assert f"{joined}:{len(lines) + 1}: {photo} is the photo of line 1 too" in " ".join(output.split()), output
    assert not out.exists() and not (tmp_path / "cache").exists()  # nothing embedded


def test_label_leaves_out_a_photo_whose_every_box_was_unknown_and_says_so(part_crops, predictions, tmp_path):
    out = tmp_path / "labelled" / "auto.jsonl"
    # No crop reaches a score of 1: every box is Unknown, and dropped.
    output = " ".join(invoke("label", "--predictions", predictions, "--support", part_crops.support, "--backbone",
                             "pixels:8", "--threshold", "1.0", "--out", out, "--no-cache", code=2).split())
    # Before: each photo written with "objects": [], which `data check` passed and training read as "nothing here".
    assert "no query could be labelled" in output and not out.exists(), output
    assert "every box it kept was Unknown" in output and "left out: written with none it would say nothing is there" in output


def test_label_counts_the_boxes_it_wrote_and_leaves_out_a_photo_whose_every_box_was_under_min_score(
        part_crops, predictions, tmp_path):
    # Before: a box dropped as a duplicate after it was labelled was counted labelled ("597 boxes labelled" over 409
    # written), and a photo whose every box was under --min-score was written with "objects": [], "nothing here"
    out = tmp_path / "labelled" / "auto.jsonl"
    output = " ".join(invoke("label", "--predictions", predictions, "--support", part_crops.support, "--backbone",
                             "pixels:8", "--threshold", "-1", "--out", out, "--no-cache").split())
    written = sum(len(r.objects) for r in read_records(out))
    assert f"{written} boxes labelled by few-shot class" in output, output
    lines = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    for o in lines[1]["objects"]:  # the second photo's every box under --min-score
        o["score"] = 0.1
    faint = tmp_path / "pred" / "faint.jsonl"
    faint.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    strict = tmp_path / "strict" / "auto.jsonl"
    output = " ".join(invoke("label", "--predictions", faint, "--support", part_crops.support, "--backbone",
                             "pixels:8", "--threshold", "-1", "--min-score", "0.2", "--out", strict, "--no-cache").split())
    assert "faint.jsonl:2: " in output and "boxes was kept (under --min-score, or empty inside the photo), so it is " \
           "left out" in output, output
    assert len(read_records(strict)) == len(read_records(out)) - 1 and all(r.objects for r in read_records(strict))


def test_a_detection_with_a_null_score_is_taken_as_one_with_none(tmp_path):
    from bbuvl.fewshot.queries import detector_score

    # A null was 0, so --min-score left it out, where a detection with no score key was taken (1.0)
    assert detector_score({"score": None}) == detector_score({}) == 1.0 and detector_score({"score": 0.25}) == 0.25


def test_label_writes_each_score_on_the_side_of_the_threshold_its_box_was_put(part_crops, predictions, tmp_path):
    crops = tmp_path / "crops.jsonl"
    invoke("classify", "--support", part_crops.support, "--query", predictions, "--backbone", "pixels:8",
           "--out", crops, "--no-cache")
    scores = [json.loads(line)["score"] for line in crops.read_text(encoding="utf-8").splitlines()]
    # A threshold a box's score misses by less than 4 decimals show: its 4-decimal rounding when that rounds up (the
    # box is Unknown, and read 0.6000 at --threshold 0.6), else the score itself (kept, and read below it).
    s = next(s for s in scores if round(s, 4) != s)
    threshold = round(s, 4) if round(s, 4) > s else s
    out = tmp_path / "auto.jsonl"
    invoke("label", "--predictions", predictions, "--support", part_crops.support, "--backbone", "pixels:8",
           "--threshold", repr(threshold), "--unknown", "flag", "--out", out, "--no-cache")

    objects = [o for r in read_records(out) for o in r.objects]
    given = {p["score"] for line in map(json.loads, predictions.read_text(encoding="utf-8").splitlines())
             for p in line.get("objects") or []}
    for o in objects:
        kept = o.extra.get("fewshot") != UNKNOWN
        assert (float(o.extra["fewshot_score"]) >= threshold) == kept, (threshold, o.extra)
        assert confidence_band(float(o.extra["fewshot_margin"])) == o.extra["fewshot_confidence"], o.extra
        assert float(o.extra["detector_score"]) in given  # the detector's own value, which --min-score compared
    assert any(float(o.extra["fewshot_score"]) == s for o in objects)  # the box the threshold was set by
