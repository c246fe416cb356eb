"""`bbuvl eval` and `bbuvl viz` end to end on real files: the METRICS.json contract, --iou, --level, errors."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.evaluate import evaluate, viz
from bbuvl.data.schema import read_records
from bbuvl.eval.coco_metrics import coco_evaluate
from bbuvl.eval.predictions import align_predictions, read_predictions
from tests.eval.conftest import EvalFiles

METRIC_KEYS = ["AP", "AP50", "AP75", "AP_agnostic", "AP50_agnostic", "per_category", "label_accuracy", "parse_failure_rate",
               "duplicate_rate", "errors", "prior", "faults"]

app = typer.Typer()
app.command("eval")(evaluate)
app.command("viz")(viz)
runner = CliRunner()


def run_eval(eval_files, out, *extra: str):
    result = runner.invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text(encoding="utf-8")), result.output


def test_metrics_file_has_exactly_the_documented_keys_and_coco_details_beside_it(eval_files, tmp_path):
    metrics, output = run_eval(eval_files, tmp_path / "m" / "metrics.json")
    assert list(metrics) == [*METRIC_KEYS, "settings"]  # settings: what --baseline checks (eval/compare.py)
    details = json.loads((tmp_path / "m" / "metrics.coco.json").read_text(encoding="utf-8"))
    assert {"settings", "coco", "coco_agnostic", "pr_curves", "notes"} <= set(details)
    assert details["coco"]["AP"] == metrics["AP"] and details["coco_agnostic"]["AP"] == metrics["AP_agnostic"]
    assert len(details["pr_curves"]["recall"]) == 101
    assert "AP50" in output and "per category" in output


def test_ap_is_the_coco_ap_of_the_paired_predictions(eval_files, tmp_path):
    metrics, _ = run_eval(eval_files, tmp_path / "metrics.json")
    records = read_records(eval_files.gt)
    paired = align_predictions(records, eval_files.gt, read_predictions(eval_files.pred), eval_files.pred).predictions
    expected = coco_evaluate(records, [p.objects if p else [] for p in paired])
    assert metrics["AP"] == expected.summary["AP"] and metrics["AP50"] == expected.summary["AP50"]
    assert 0.0 < metrics["AP"] < metrics["AP50"] <= 1.0


def test_every_box_is_counted_once_and_failures_are_rated(eval_files, tmp_path):
    metrics, _ = run_eval(eval_files, tmp_path / "metrics.json")
    e = metrics["errors"]
    assert e["matched"] + e["mislocated"] + e["missed"] == e["gt_objects"]
    assert e["matched"] + e["mislocated"] + e["extra"] == e["predicted_objects"]
    assert e["images"] == 6 and e["prediction_errors"] == 1 and e["parse_failures"] == 2
    assert metrics["parse_failure_rate"] == pytest.approx(2 / 6)
    assert metrics["label_accuracy"]["matched_boxes"] == e["matched"]


def test_answers_the_token_budget_cut_are_counted_and_shown(eval_files, tmp_path):
    metrics, output = run_eval(eval_files, tmp_path / "metrics.json")
    assert metrics["errors"]["cut_answers"] == 0 and "token budget" not in output
    lines = [json.loads(line) for line in eval_files.pred.read_text(encoding="utf-8").splitlines()]
    lines[0]["cut"] = lines[2]["cut"] = True
    lines[1]["cut"] = "yes"  # not what predict writes: not counted
    pred = tmp_path / "cut.jsonl"
    pred.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "c.json")],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    cut = json.loads((tmp_path / "c.json").read_text(encoding="utf-8"))
    assert cut["errors"]["cut_answers"] == 2 and cut["AP"] == metrics["AP"]
    assert re.search(r"answers cut by the token budget\s*│\s*2", result.output), result.output


def test_iou_flag_changes_the_matching_but_not_coco_ap(eval_files, tmp_path):
    loose, _ = run_eval(eval_files, tmp_path / "loose.json", "--iou", "0.3")
    strict, _ = run_eval(eval_files, tmp_path / "strict.json", "--iou", "0.9")
    assert strict["errors"]["matched"] < loose["errors"]["matched"]
    assert strict["AP"] == loose["AP"]
    details = json.loads((tmp_path / "strict.coco.json").read_text(encoding="utf-8"))
    assert details["settings"]["iou"] == 0.9


def test_level_one_evaluates_top_level_categories(eval_files, tmp_path):
    full, _ = run_eval(eval_files, tmp_path / "full.json")
    top, _ = run_eval(eval_files, tmp_path / "top.json", "--level", "1")
    assert all("/" not in name for name in top["per_category"])
    assert len(top["per_category"]) < len(full["per_category"])
    assert top["AP50"] >= full["AP50"] - 1e-9  # a wrong state no longer costs anything


def test_min_score_drops_low_scored_predictions_from_the_counts(eval_files, tmp_path):
    everything, _ = run_eval(eval_files, tmp_path / "a.json")
    confident, _ = run_eval(eval_files, tmp_path / "b.json", "--min-score", "0.5")
    assert confident["errors"]["predicted_objects"] < everything["errors"]["predicted_objects"]
    assert confident["AP"] == everything["AP"]


def test_min_score_keeps_a_prediction_scoring_exactly_the_minimum(eval_files, tmp_path):
    # A minimum taken from a score the predictions hold (as one read off a report is): "at least" keeps that box
    scores = sorted(o["score"] for line in eval_files.pred.read_text(encoding="utf-8").splitlines()
                    for o in json.loads(line)["objects"])
    minimum = scores[len(scores) // 2]
    metrics, _ = run_eval(eval_files, tmp_path / "m.json", "--min-score", repr(minimum))
    at_least = sum(s >= minimum for s in scores)
    assert at_least > sum(s > minimum for s in scores)
    assert metrics["errors"]["predicted_objects"] == at_least
    assert metrics["settings"]["min_score"] == minimum


def test_missing_file_and_malformed_line_are_clean_errors(eval_files, tmp_path):
    result = runner.invoke(app, ["eval", "--pred", str(tmp_path / "nope.jsonl"), "--gt", str(eval_files.gt),
                                 "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 2 and "nope.jsonl: no such file" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text(eval_files.pred.read_text(encoding="utf-8") + '{"image": "x.jpg", "objects": [{"bbox_2d": [1, 2]', encoding="utf-8")
    result = runner.invoke(app, ["eval", "--pred", str(bad), "--gt", str(eval_files.gt), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 2 and "bad.jsonl:7: invalid JSON" in result.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_viz_draws_ground_truth_and_predictions(eval_files, tmp_path):
    result = runner.invoke(app, ["viz", str(eval_files.gt), str(tmp_path / "gt"), "--limit", "2"])
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "gt").glob("*.png"))
    assert len(files) == 2
    single = Image.open(files[0]).size
    result = runner.invoke(app, ["viz", str(eval_files.gt), str(tmp_path / "both"), "--pred", str(eval_files.pred)])
    assert result.exit_code == 0, result.output
    both = sorted((tmp_path / "both").glob("*.png"))
    assert len(both) == 6 and Image.open(both[0]).width > single[0] * 1.8  # two panels side by side
    result = runner.invoke(app, ["viz", str(eval_files.pred), str(tmp_path / "pred"), "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "pred").glob("*.png"))) == 3


def test_viz_names_each_photo_it_could_not_read_and_draws_the_others(eval_files, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(eval_files.gt.parent, data)
    photos = sorted((data / "images").glob("val_*"))
    photos[0].write_bytes(photos[0].read_bytes()[:100])  # cut short
    photos[1].unlink()
    result = runner.invoke(app, ["viz", str(data / "val.jsonl"), str(tmp_path / "out"), "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.png"))) == 3  # the two on placeholders, the third as it is
    said = " ".join(result.output.split())
    assert f"{photos[0].name}: cannot decode image" in said and f"{photos[1].name}: image file not found" in said
    assert said.count("drawn as a grey placeholder") == 2


def test_the_report_names_each_photo_it_drew_as_a_placeholder(eval_files, tmp_path):
    # The report drew a missing photo grey and the terminal said nothing of it.
    import shutil

    data = tmp_path / "data"
    shutil.copytree(eval_files.gt.parent, data)
    pred = data / "pred.jsonl"
    pred.write_text(eval_files.pred.read_text(encoding="utf-8").replace(str(eval_files.gt.parent) + "/", ""),
                    encoding="utf-8")
    missing = sorted((data / "images").glob("val_*"))[0]
    missing.unlink()
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(data / "val.jsonl"), "--out",
                                 str(tmp_path / "m.json"), "--report", str(tmp_path / "report"), "--worst", "6"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert said.count(f"{missing.name}: image file not found (drawn as a grey placeholder in the report)") == 1
    assert said.count("grey placeholder") == 1  # the only one, named once though it is in both lists
    assert (tmp_path / "report" / "index.html").is_file()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_report_folder_is_eval_s_own_never_one_of_the_user_s_files(eval_files, tmp_path):
    # `--report ~` (any folder of the user's) put index.html, the curves, worst/ and faults/ among their files, and
    # `--report` the predictions' own folder wrote beside them.
    from bbuvl.cli import app as bbuvl  # which records what a command wrote as its own when it ends

    def report_into(report: Path, out: Path, *extra: str):
        return runner.invoke(bbuvl, ["eval", "--pred", str(pred), "--gt", str(eval_files.gt), "--out", str(out),
                                   "--report", str(report), "--worst", "2", *extra], env={"COLUMNS": "300"})

    pred = tmp_path / "preds" / "pred.jsonl"
    pred.parent.mkdir()
    pred.write_bytes(eval_files.pred.read_bytes())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n", encoding="utf-8")
    result = report_into(mine, tmp_path / "m.json")
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{mine}: holds notes.txt, which `bbuvl eval` did not write" in said, result.output
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and not (tmp_path / "m.json").exists()
    result = report_into(pred.parent, tmp_path / "m.json", "--overwrite")
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{pred.parent}: holds the input --pred" in said, result.output
    assert [p.name for p in pred.parent.iterdir()] == ["pred.jsonl"]

    report = tmp_path / "report"
    for _ in range(2):  # its own report, --out inside it: replaced without --overwrite
        result = report_into(report, report / "m.json")
        assert result.exit_code == 0, result.output
    assert {"index.html", "m.json", "m.coco.json", "worst"} <= {p.name for p in report.iterdir()}
    (report / "notes.txt").write_text("mine\n", encoding="utf-8")  # no longer the report eval wrote
    result = report_into(report, tmp_path / "m.json")
    # the file put in is named, not the report's own beside it
    assert result.exit_code == 2 and f"{report}: holds notes.txt, which" in " ".join(result.output.split()), result.output
    result = report_into(mine, tmp_path / "m.json", "--overwrite")  # given up: the report goes in, the rest stays
    assert result.exit_code == 0 and (mine / "notes.txt").read_text(encoding="utf-8") == "mine\n", result.output
    assert (mine / "index.html").is_file()


def test_a_box_a_billion_billion_times_the_photo_is_scored_without_warnings(eval_files, tmp_path):
    # IoU of a 1e300-pixel box overflowed: numpy's RuntimeWarning and the line of code were printed to the user.
    lines = [json.loads(x) for x in eval_files.pred.read_text(encoding="utf-8").splitlines()]
    lines[0]["objects"].append({"bbox_2d": [-1e300, -1e300, 1e300, 1e300], "label": "线缆", "score": 0.99})
    lines[0]["objects"].append({"bbox_2d": [-1e300, -1e300, 1e300, 1e300], "label": "线缆", "score": 0.98})
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    base, _ = run_eval(eval_files, tmp_path / "base.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    # an area past the largest float has IoU 0 with every box: two more extra boxes, neither a repeat of the other
    assert metrics["errors"]["extra"] == base["errors"]["extra"] + 2
    assert metrics["duplicate_rate"] * metrics["errors"]["predicted_objects"] == pytest.approx(
        base["duplicate_rate"] * base["errors"]["predicted_objects"])


def test_an_output_where_a_file_is_in_the_way_is_a_clean_error_and_the_file_is_kept(eval_files, tmp_path):
    in_the_way = tmp_path / "notes.txt"
    in_the_way.write_text("mine\n", encoding="utf-8")
    for args in (["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out", str(in_the_way / "m.json")],
                 ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "m.json"),
                  "--report", str(in_the_way / "report")],
                 ["viz", str(eval_files.gt), str(in_the_way / "pictures")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "cannot be made a folder" in result.output, result.output
        assert "Traceback" not in result.output and in_the_way.read_text(encoding="utf-8") == "mine\n"


def test_an_out_whose_details_name_leaves_no_room_is_refused_naming_the_longest_out_that_works(eval_files, tmp_path):
    # The refusal named METRICS.coco.json and the longest name for that file, not for --out: an --out that long was
    # refused again, and the number moved with the pid's digits.
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    advised = set()
    for length in (limit - 10, limit - 25):
        out = tmp_path / ("m" * (length - len(".json")) + ".json")
        result = runner.invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt),
                                     "--out", str(out)])
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and "Traceback" not in text, result.output
        assert f"{out}: a name of {length} bytes, and writing {out.stem}.coco.json beside it" in text, text
        advised.add(int(re.search(r"choose a name of at most (\d+) bytes", text).group(1)))
    (longest,) = advised
    run_eval(eval_files, tmp_path / ("m" * (longest - len(".json")) + ".json"))
    out = tmp_path / ("m" * (longest + 1 - len(".json")) + ".json")
    result = runner.invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out", str(out)])
    assert result.exit_code == 2 and f"at most {longest} bytes" in " ".join(result.output.split()), result.output


@pytest.mark.parametrize(("content", "says"), [
    (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, r"photo.jsonl:1: not UTF-8 text \(byte 0xff at column 1\)"),
    (b"[" * 100_000 + b"\n", r"photo.jsonl:1: invalid JSON: nested too deep"),
])
def test_viz_of_a_file_that_is_no_jsonl_names_it(eval_files, tmp_path, content, says):
    (tmp_path / "photo.jsonl").write_bytes(content)
    result = runner.invoke(app, ["viz", str(tmp_path / "photo.jsonl"), str(tmp_path / "pictures")])
    assert result.exit_code == 2 and re.search(says, result.output.replace("\n", "")), result.output


def test_viz_of_a_folder_says_it_is_a_folder_not_that_nothing_is_there(eval_files, tmp_path):
    result = runner.invoke(app, ["viz", str(tmp_path), str(tmp_path / "pictures")])
    assert result.exit_code == 2 and "a folder, not a JSONL file" in result.output, result.output
    result = runner.invoke(app, ["viz", str(eval_files.gt), str(tmp_path / "pictures"), "--pred", str(tmp_path)])
    assert result.exit_code == 2 and "a folder, not a JSONL file (--pred)" in result.output, result.output


def test_viz_names_the_first_five_unreadable_photos_then_says_how_many_more(eval_files, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(eval_files.gt.parent, data)
    photos = sorted((data / "images").glob("val_*"))
    assert len(photos) == 6
    for photo in photos:  # there, but none can be read (a photo none of whose files is there is an error: below)
        photo.write_bytes(b"not a photo")
    result = runner.invoke(app, ["viz", str(data / "val.jsonl"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert said.count("not an image (no photo format recognised in its bytes) (drawn as a grey placeholder)") == 5
    assert "warning: ... and 1 more photos drawn as grey placeholders" in said
    assert len(list((tmp_path / "out").glob("*.png"))) == 6


@pytest.mark.parametrize("given", ["text", "png", "folder", "missing"])
@pytest.mark.parametrize("command", ["viz", "eval --report"])
def test_a_font_path_that_is_no_font_is_an_error_naming_it_and_nothing_is_drawn(eval_files, tmp_path, given, command):
    font = {"text": tmp_path / "font.ttf", "png": tmp_path / "font.png", "folder": tmp_path / "fonts",
            "missing": tmp_path / "gone.ttf"}[given]
    if given == "text":
        font.write_text("not a font\n", encoding="utf-8")
    elif given == "png":
        Image.new("RGB", (8, 8)).save(font)
    elif given == "folder":
        font.mkdir()
    args = (["viz", str(eval_files.gt), str(tmp_path / "out")] if command == "viz" else
            ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "out" / "m.json"),
             "--report", str(tmp_path / "out" / "report")])
    result = runner.invoke(app, [*args, "--font-path", str(font)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    why = {"text": "not a font file FreeType can read", "png": "not a font file FreeType can read",
           "folder": "a folder, not a font file", "missing": "font file not found"}[given]
    assert said.startswith(f"error: {font}: {why}") and "(--font-path)" in said, said
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file() and not p.name.startswith(".")] == []  # locks aside


def test_metrics_records_what_its_numbers_depend_on(eval_files, tmp_path):
    import hashlib

    metrics, _ = run_eval(eval_files, tmp_path / "m.json", "--level", "1", "--iou", "0.6")
    s = metrics["settings"]
    assert (s["level"], s["iou"], s["min_score"], s["gt"]) == (1, 0.6, 0.0, str(eval_files.gt))
    assert s["gt_sha256"] == hashlib.sha256(eval_files.gt.read_bytes()).hexdigest() and len(s["hierarchy_sha256"]) == 64


def hierarchy_without_a_fault(tmp_path):
    from bbuvl.data.labels import DEFAULT_HIERARCHY

    text = DEFAULT_HIERARCHY.read_text(encoding="utf-8")
    path = tmp_path / "h.json"
    path.write_text(text.replace('{"gloss": "wrong", "fault": true}', '"wrong"', 1), encoding="utf-8")
    return path


@pytest.mark.parametrize("baseline_args, says", [
    (["--level", "1"], "categories at level 1 in the baseline, full label here"),
    (["--iou", "0.7"], "matching IoU 0.7 in the baseline, 0.5 here"),
    (["--min-score", "0.3"], "error counts at score 0.3 in the baseline, 0.0 here"),
    (["--hierarchy", "HIERARCHY"], "h.json (sha256 "),
])
def test_a_baseline_measured_otherwise_is_refused_naming_both_values(eval_files, tmp_path, baseline_args, says):
    args = [str(hierarchy_without_a_fault(tmp_path)) if a == "HIERARCHY" else a for a in baseline_args]
    run_eval(eval_files, tmp_path / "base.json", *args)
    out = tmp_path / "m.json"
    result = runner.invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out", str(out),
                                 "--baseline", str(tmp_path / "base.json")])
    assert result.exit_code == 2 and "base.json: not comparable with this evaluation" in result.output
    assert says in " ".join(result.output.split()) and not out.exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_baseline_on_other_ground_truth_is_refused_and_the_same_ground_truth_elsewhere_is_compared(eval_files, tmp_path):
    lines = eval_files.gt.read_text(encoding="utf-8").splitlines(keepends=True)
    other = eval_files.gt.with_name("val_fewer.jsonl")  # beside the photos, so that its records resolve
    other.write_text("".join(lines[:-1]), encoding="utf-8")
    try:
        run_eval(eval_files, tmp_path / "base.json", "--gt", str(other))  # the later --gt wins
    finally:
        other.unlink()
    result = runner.invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out",
                                 str(tmp_path / "m.json"), "--baseline", str(tmp_path / "base.json")])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"ground truth {other} (sha256 " in said and f"{eval_files.gt} (sha256 " in said

    base, _ = run_eval(eval_files, tmp_path / "same.json")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "same.json").write_text(json.dumps({**base, "settings": {**base["settings"], "gt": "elsewhere/val.jsonl"}}),
                                    encoding="utf-8")
    _, output = run_eval(eval_files, tmp_path / "m2.json", "--baseline", str(copy / "same.json"))
    assert "Against the baseline" in output and "not comparable" not in output


def test_a_baseline_without_settings_is_compared_with_a_note_that_they_are_unknown(eval_files, tmp_path):
    base, _ = run_eval(eval_files, tmp_path / "base.json")
    del base["settings"]
    (tmp_path / "old.json").write_text(json.dumps(base), encoding="utf-8")
    _, output = run_eval(eval_files, tmp_path / "m.json", "--baseline", str(tmp_path / "old.json"))
    said = " ".join(output.split())
    assert "Against the baseline" in said and "old.json: the baseline's settings are unknown" in said


def test_ground_truth_without_objects_says_why_ap_is_undefined_in_the_terminal_and_the_report(eval_files, tmp_path):
    records = [json.loads(line) for line in eval_files.gt.read_text(encoding="utf-8").splitlines()]
    empty = eval_files.gt.with_name("empty.jsonl")  # beside the photos, so that its records resolve
    empty.write_text("".join(json.dumps({**r, "objects": []}, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    try:
        metrics, output = run_eval(eval_files, tmp_path / "m.json", "--gt", str(empty), "--report", str(tmp_path / "r"),
                                   "--worst", "1")
    finally:
        empty.unlink()
    note = f"AP is undefined (–): the ground truth {empty} holds no object"
    assert metrics["AP"] is None and note in " ".join(output.split())
    assert note in (tmp_path / "r" / "index.html").read_text(encoding="utf-8")


def test_a_category_only_predicted_is_named_as_the_reason_for_its_missing_ap(eval_files, tmp_path):
    dropped = read_records(eval_files.gt)[0].objects[0].desc
    records = [json.loads(line) for line in eval_files.gt.read_text(encoding="utf-8").splitlines()]
    fewer = eval_files.gt.with_name("fewer.jsonl")  # beside the photos, so that its records resolve
    fewer.write_text("".join(json.dumps({**r, "objects": [o for o in r["objects"] if o["desc"] != dropped]},
                                        ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    try:
        metrics, output = run_eval(eval_files, tmp_path / "m.json", "--gt", str(fewer))
    finally:
        fewer.unlink()
    assert metrics["per_category"][dropped]["AP"] is None and metrics["AP"] is not None
    assert "1 category only predicted, with no object in the ground truth, has no AP (–)" in " ".join(output.split())


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_boxes_beyond_their_photo_are_counted_in_a_note_naming_the_first(eval_files, tmp_path):
    # Boxes written in 0-1000 (another family's frame) scored AP near 0 with no word of why.
    lines = [json.loads(x) for x in eval_files.pred.read_text(encoding="utf-8").splitlines()]
    total = sum(len(x["objects"]) for x in lines)
    lines[0]["objects"][0]["bbox_2d"] = [10, 10, lines[0]["width"] * 1.2, 20]  # 20% past the right edge
    lines[3]["objects"][1]["bbox_2d"] = [-50, 10, 20, 20]
    lines[3]["objects"][2]["bbox_2d"] = [10, 10, lines[3]["width"] * 1.04, 20]  # within the 5% slack: not counted
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"2 of {total} predicted boxes, in 2 photo(s), reach more than 5% of a side beyond their photo" in said
    assert f"pred.jsonl:1: {lines[0]['image']} is {lines[0]['width']}x{lines[0]['height']}, box [10, 10, 384, 20]" in said
    _, plain = run_eval(eval_files, tmp_path / "plain.json")
    assert "beyond their photo" not in plain


@pytest.mark.parametrize("option", ["--pred", "--gt"])
def test_a_folder_or_a_pipe_given_as_a_file_is_named_for_what_it_is(eval_files, tmp_path, option):
    # Both were 'no such file', though they are there; a pipe read as a file would be waited on forever.
    import os

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for given, says in ((tmp_path, "a folder, not a JSONL file"), (pipe, "a FIFO (named pipe), not a JSONL file")):
        args = {"--pred": str(eval_files.pred), "--gt": str(eval_files.gt), option: str(given)}
        result = runner.invoke(app, ["eval", *[x for kv in args.items() for x in kv], "--out", str(tmp_path / "m.json")])
        assert result.exit_code == 2 and f"{given}: {says} ({option})" in " ".join(result.output.split())
    result = runner.invoke(app, ["viz", str(pipe), str(tmp_path / "out")])
    assert result.exit_code == 2 and f"{pipe}: a FIFO (named pipe), not a" in " ".join(result.output.split())
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("option", "expected"), [("--hierarchy", "hierarchy JSON file"), ("--baseline", "METRICS.json")])
def test_a_pipe_or_a_folder_as_hierarchy_or_baseline_is_refused_not_waited_on(eval_files, tmp_path, option, expected):
    # A pipe as either hung eval (and viz --hierarchy) for ever; a folder was '[Errno 21] Is a directory'.
    import os

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for given, says in ((pipe, f"a FIFO (named pipe), not a {expected}"), (tmp_path, f"a folder, not a {expected}")):
        result = runner.invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out",
                                     str(tmp_path / "m.json"), option, str(given)])
        assert result.exit_code == 2 and f"{given}: {says} ({option})" in " ".join(result.output.split())
    if option == "--hierarchy":
        result = runner.invoke(app, ["viz", str(eval_files.gt), str(tmp_path / "out"), "--hierarchy", str(pipe)])
        assert result.exit_code == 2 and f"{pipe}: a FIFO (named pipe), not a" in " ".join(result.output.split())


def test_viz_draws_a_box_of_1e300_pixels_without_warnings(eval_files, tmp_path):
    # Matching it for its colour printed numpy's overflow RuntimeWarning and the line of code.
    lines = [json.loads(x) for x in eval_files.pred.read_text(encoding="utf-8").splitlines()]
    lines[0]["objects"].append({"bbox_2d": [-1e300, -1e300, 1e300, 1e300], "label": "线缆", "score": 0.99})
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = runner.invoke(app, ["viz", str(eval_files.gt), str(tmp_path / "out"), "--pred", str(pred), "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.png"))) == 1 and "RuntimeWarning" not in result.output


def test_a_predicted_label_with_a_newline_stays_on_its_row(eval_files, tmp_path):
    # The ground truth refuses a label with a control character; a model's answer may hold one, and its newline split
    # the table cell it was shown in over two rows.
    lines = [json.loads(line) for line in eval_files.pred.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        for obj in line.get("objects") or []:
            obj["label"] = obj["label"].replace("/", "\nfake row\t/", 1)
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "m.json")],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert not any(line.lstrip("│ ").startswith("fake row") for line in result.output.splitlines()), result.output


def test_a_photo_predicted_twice_scores_as_the_file_predict_leaves_when_it_resumes_it(eval_files, tmp_path):
    from bbuvl.infer.output import repair_output

    lines = eval_files.pred.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    twice = tmp_path / "twice.jsonl"  # an earlier run's line for the first photo, found nothing, then the later one
    twice.write_text("\n".join([json.dumps({**first, "objects": [], "raw": "[]"}), *lines]) + "\n", encoding="utf-8")
    repaired = tmp_path / "repaired.jsonl"
    repaired.write_bytes(twice.read_bytes())
    repair_output(repaired)  # what `bbuvl predict` leaves of it when it resumes
    assert len(repaired.read_text(encoding="utf-8").splitlines()) == len(lines)
    got, output = run_eval(EvalFiles(eval_files.gt, twice), tmp_path / "twice.json")
    want, _ = run_eval(EvalFiles(eval_files.gt, repaired), tmp_path / "repaired.json")
    # Before, the first line was scored: the photo's objects all missed, where predict keeps the later line.
    assert {k: v for k, v in got.items() if k != "settings"} == {k: v for k, v in want.items() if k != "settings"}
    assert "the last line of each photo was used" in " ".join(output.split())


def test_a_damaged_manifest_beside_the_predictions_is_named_without_advice_to_delete_them(eval_files, tmp_path):
    pred = tmp_path / "pred.jsonl"
    pred.write_bytes(eval_files.pred.read_bytes())
    manifest = tmp_path / "pred.jsonl.predict.json"
    manifest.write_text("garbage\n", encoding="utf-8")
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "m.json")])
    assert result.exit_code != 0
    text = " ".join(result.output.split())
    # Before: "delete it and the predictions beside it to start over", said to someone who only meant to score them.
    assert f"{manifest}: not a `bbuvl predict` manifest" in text and "delete it and the predictions" not in text
    assert "remove it to read them as another tool's" in text
    manifest.unlink()  # as it says: the lines are then scored
    run_eval(EvalFiles(eval_files.gt, pred), tmp_path / "m.json")


def test_out_named_like_another_metrics_details_or_a_folder_is_refused_and_the_pair_kept(eval_files, tmp_path, monkeypatch):
    first, _ = run_eval(eval_files, tmp_path / "m.json")
    details = (tmp_path / "m.coco.json").read_bytes()
    result = runner.invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt),
                                 "--out", str(tmp_path / "m.coco.json")])
    said = " ".join(result.output.split())
    # Before: m.json's details were replaced by a METRICS.json (eval wrote both, so its ledger let it), exit 0.
    assert result.exit_code == 2 and "a name ending in .coco.json is where eval writes the COCO details of m.json" in said, said
    assert (tmp_path / "m.coco.json").read_bytes() == details and not (tmp_path / "m.coco.coco.json").exists()

    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out", "."])
    # Before: a ValueError traceback ("PosixPath('.') has an empty name").
    assert result.exit_code == 2 and ".: is a folder, expected a file name to write (--out)" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_labels_the_hierarchy_does_not_know_are_named_for_each_side(eval_files, tmp_path):
    lines = [json.loads(line) for line in eval_files.pred.read_text(encoding="utf-8").splitlines()]
    box = {"bbox_2d": [1, 1, 20, 20], "score": 0.9}
    lines[0]["objects"] += [{**box, "label": "外星人/飞碟"}, {**box, "label": "外星人/飞碟"}, {**box, "label": "[red]x"}]
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    records = eval_files.gt.read_text(encoding="utf-8").splitlines()
    first = json.loads(records[0])
    first["objects"][0]["desc"] = "螺丝连接点/BBU安装螺丝/松了"  # a state the hierarchy does not have
    first["images"] = [str(eval_files.gt.parent / first["images"][0])]
    gt = tmp_path / "gt.jsonl"
    gt.write_text(json.dumps(first, ensure_ascii=False) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "m.json")],
                           env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    # Before: not a word; the unknown state counted as no fault, the predicted labels as categories of their own.
    assert (f"1 ground-truth objects in {gt} have labels the hierarchy" in said
            and "'螺丝连接点/BBU安装螺丝/松了' (1); the first: unknown state '松了'" in said), said
    assert f"3 predicted boxes in {pred} have labels the hierarchy" in said and "'外星人/飞碟' (2), '[red]x' (1)" in said, said
    notes = json.loads((tmp_path / "m.coco.json").read_text(encoding="utf-8"))["notes"]
    assert sum("does not know" in n for n in notes) == 2

    result = runner.invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out",
                                 str(tmp_path / "clean.json")])
    assert result.exit_code == 0 and "does not know" not in result.output


@pytest.mark.parametrize("what", ["dataset", "predictions"])
def test_viz_of_a_file_none_of_whose_photos_is_there_is_an_error_and_draws_nothing(eval_files, tmp_path, what):
    import shutil

    data = tmp_path / "moved"  # the JSONL carried to another machine without its photos
    data.mkdir()
    shutil.copy(eval_files.gt, data / "val.jsonl")
    shutil.copy(eval_files.pred, data / "pred.jsonl")
    lines = [json.loads(line) for line in (data / "pred.jsonl").read_text(encoding="utf-8").splitlines()]
    for line in lines:
        line["image"] = Path(line["image"]).relative_to(eval_files.gt.parent).as_posix()
    (data / "pred.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    given = data / ("val.jsonl" if what == "dataset" else "pred.jsonl")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "theirs.png").write_bytes(b"kept")
    result = runner.invoke(app, ["viz", str(given), str(tmp_path / "out"), "--limit", "4", "--overwrite"])
    said = " ".join(result.output.split())
    # Before: exit 0 and four grey placeholders, each naming a missing photo.
    assert result.exit_code == 2 and f"{given}: none of the 4 photo(s) to draw is there (the first: {data / 'images'}" in said, said
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["theirs.png"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_baseline_judged_at_other_verdict_thresholds_is_compared_naming_both_pairs(eval_files, tmp_path):
    run_eval(eval_files, tmp_path / "base.json", "--verdict-review", "0.1", "--verdict-fail", "0.2")
    _, output = run_eval(eval_files, tmp_path / "m.json", "--baseline", str(tmp_path / "base.json"))
    said = " ".join(output.split())
    # Before: fault recall at 'fail' compared, better or worse, with nothing saying 'fail' was another threshold.
    assert ("against the baseline: verdict thresholds, photos predicted in one pass: review 0.1, fail 0.2 in the "
            "baseline, review 0.25, fail 0.5 here") in said
    _, output = run_eval(eval_files, tmp_path / "m2.json", "--baseline", str(tmp_path / "m.json"))
    assert "verdict thresholds" not in output


def test_a_report_folder_another_eval_is_writing_is_refused_naming_it(eval_files, tmp_path):
    # Before: the running eval's temporaries (.worst.PID.*.tmp) were named as files eval did not write, and
    # --overwrite was offered to write among them
    from bbuvl.cli import app as bbuvl
    from tests.reliability.test_train2_model_being_written import _hold

    report = tmp_path / "report"
    report.mkdir()
    (report / ".worst.12345.abc.tmp").mkdir()  # what a running eval draws into
    child = _hold(report, "eval")
    try:
        result = runner.invoke(bbuvl, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out",
                                       str(tmp_path / "m.json"), "--report", str(report)], env={"COLUMNS": "300"})
    finally:
        child.kill()
        child.wait()
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"another `bbuvl eval` (pid {child.pid}) is writing it" in said, result.output
    assert "did not write" not in said and "--overwrite" not in said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_eval_killed_between_its_metrics_and_their_details_leaves_no_earlier_details_beside_them(eval_files,
                                                                                                   tmp_path):
    # METRICS.json and METRICS.coco.json are two files written one after the other: SIGKILLed between them, the
    # second run's metrics stood beside the first run's COCO details, of other predictions.
    import signal
    import subprocess
    import sys

    from bbuvl.cli import app as bbuvl  # whose callback releases what each command claimed

    out = tmp_path / "metrics.json"
    args = ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out", str(out)]
    assert runner.invoke(bbuvl, [*args, "--min-score", "0.99"]).exit_code == 0
    first = (tmp_path / "metrics.coco.json").read_bytes()
    script = f"""
import os, signal
from typer.testing import CliRunner
from bbuvl.cli import app
replace = os.replace
def killed_at_the_details(src, dst):
    if os.path.basename(dst) == "metrics.coco.json":
        os.kill(os.getpid(), signal.SIGKILL)
    return replace(src, dst)
os.replace = killed_at_the_details
print(CliRunner().invoke(app, ["eval", "--pred", {str(eval_files.pred)!r}, "--gt", {str(eval_files.gt)!r}, "--out",
                               {str(out)!r}, "--overwrite"], catch_exceptions=False).output)
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    assert json.loads(out.read_text(encoding="utf-8"))["settings"]["min_score"] == 0.0, "the second run's metrics"
    details = tmp_path / "metrics.coco.json"
    assert not details.exists() or details.read_bytes() != first  # never the first run's beside the second's
    result = runner.invoke(bbuvl, args)
    assert result.exit_code == 0, result.output  # the killed run's outputs are its own to redo
    assert json.loads(details.read_text(encoding="utf-8"))["coco"]["AP"] == json.loads(out.read_text())["AP"]
