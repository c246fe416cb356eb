"""`fewshot eval` end to end on synthetic part crops: every table and plot, cache hits on a rerun, bad files skipped."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.fewshot import app
from bbuvl.fewshot.evaluate import parse_shots, parse_thresholds, threshold_name
from bbuvl.fewshot.support import UNKNOWN

FILES = ["metrics.csv", "per_class.csv", "queries.csv", "summary.json", "accuracy_vs_threshold.png",
         "fallout_vs_threshold.png", "confusion_best.png"]


def invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_parse_shots_and_thresholds():
    assert parse_shots("1,5,10") == [1, 5, 10]
    assert parse_shots("1, all") == [1, None]
    assert parse_thresholds("0.4:0.9:0.05") == [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]
    assert parse_thresholds("0.7,0.5") == [0.5, 0.7]
    for bad in ("0", "x", "", "1,²", "٣"):  # a superscript or Arabic-Indic digit: isdigit, not int (a raw error before)
        with pytest.raises(ValueError, match="shot"):
            parse_shots(bad)
    with pytest.raises(ValueError, match="START:STOP:STEP"):
        parse_thresholds("0.9:0.4:0.1")
    assert [threshold_name(t) for t in parse_thresholds("0.97:0.985:0.005")] == ["0.97", "0.975", "0.98", "0.985"]
    assert [threshold_name(t) for t in (0.4, 1.0, 0.5 + 1e-12)] == ["0.40", "1.00", "0.50"]


@pytest.mark.parametrize("backbone", ["clip", "pixels"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_writes_every_table_and_plot_for_each_shot_and_threshold(part_crops, tiny_backbones, tmp_path, backbone):
    spec = tiny_backbones[backbone] if backbone != "pixels" else "pixels"
    out = tmp_path / "res"
    invoke("eval", "--support", part_crops.support, "--query", part_crops.query, "--backbone", spec,
           "--shots", "1,3,5", "--thresholds", "0.3:0.9:0.2", "--out", out, "--cache", tmp_path / "cache")
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in FILES[-3:]:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 300
    rows = read_csv(out / "metrics.csv")
    assert [(r["shots"], r["threshold"]) for r in rows] == [(s, t) for s in ("1", "3", "5") for t in ("0.3", "0.5", "0.7", "0.9")]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    n = summary["queries"]["evaluated"]
    assert n == sum(1 for _ in part_crops.query.rglob("*.png"))
    assert summary["queries"]["unknown_truth"] == sum(1 for c in part_crops.held_out for _ in (part_crops.query / c).rglob("*.png"))
    assert summary["classes"] == sorted(part_crops.known)
    assert summary["support_images"]["3"] == {c: 3 for c in part_crops.known}
    assert set(summary["accuracy_table"]) == {"1", "3", "5"}
    for r in rows:
        assert 0 <= float(r["accuracy"]) <= 1 and 0 <= float(r["fallout"]) <= 1
        assert int(r["queries"]) == n
    labels = sorted(part_crops.known) + [UNKNOWN]
    matrix = read_csv(out / "confusion" / "shots5_t0.50.csv")
    assert [m["true \\ predicted"] for m in matrix] == labels
    assert list(matrix[0])[1:] == labels
    assert sum(int(v) for m in matrix for k, v in m.items() if k != "true \\ predicted") == n
    per_class = [r for r in read_csv(out / "per_class.csv") if r["shots"] == "5" and r["threshold"] == "0.5"]
    assert [r["class"] for r in per_class] == labels
    assert len(read_csv(out / "queries.csv")) == 3 * n


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_rerun_embeds_nothing_and_reports_cache_hits(part_crops, tmp_path):
    args = ["eval", "--support", part_crops.support, "--query", part_crops.query, "--backbone", "pixels:8",
            "--shots", "1,2", "--thresholds", "0.5", "--cache", tmp_path / "cache"]
    invoke(*args, "--out", tmp_path / "a")
    output = invoke(*args, "--out", tmp_path / "b")
    first = json.loads((tmp_path / "a" / "summary.json").read_text(encoding="utf-8"))["embedding"]
    second = json.loads((tmp_path / "b" / "summary.json").read_text(encoding="utf-8"))["embedding"]
    assert first["queries"]["embedded"] > 0 and first["queries"]["cached"] == 0
    assert second["queries"] == {"embedded": 0, "cached": first["queries"]["embedded"]}
    assert second["support"] == {"embedded": 0, "cached": first["support"]["embedded"]}
    assert f"support 0 computed, {first['support']['embedded']} from the cache; queries 0 computed" in output
    assert (tmp_path / "a" / "metrics.csv").read_text() == (tmp_path / "b" / "metrics.csv").read_text()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_corrupt_query_and_support_images_are_reported_and_the_rest_evaluated(part_crops, tmp_path):
    query, support = tmp_path / "query", tmp_path / "support"
    shutil.copytree(part_crops.query, query)
    shutil.copytree(part_crops.support, support)
    cls = part_crops.known[0]
    (query / cls / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (support / cls / "0_broken_support.png").write_bytes(b"\xff\xd8\xff garbage")
    (query / "orphan.png").write_bytes((next((query / cls).glob("*_*.png"))).read_bytes())
    output = invoke("eval", "--support", support, "--query", query, "--backbone", "pixels:8",
                    "--shots", "2,all", "--thresholds", "0.5", "--out", tmp_path / "res", "--no-cache")
    summary = json.loads((tmp_path / "res" / "summary.json").read_text(encoding="utf-8"))
    assert summary["queries"]["evaluated"] == sum(1 for _ in part_crops.query.rglob("*.png"))
    assert sorted(Path(s.split(":")[0]).name for s in summary["skipped"]) == ["0_broken_support.png", "broken.png"]
    assert summary["support_images"]["all"][cls] == 5  # the 5 good crops, the broken one left out
    assert any("orphan.png" in p and "no ground truth" in p for p in summary["problems"])
    assert "broken.png" in output and "0_broken_support.png" in output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_dataset_jsonl_queries_with_margin_and_level(part_crops, tmp_path):
    support = tmp_path / "support"
    from bbuvl.fewshot.crops import write_crops

    write_crops(part_crops.data / "train.jsonl", support, per_class=3, level=1)
    invoke("eval", "--support", support, "--query", part_crops.data / "val.jsonl", "--backbone", "pixels:8",
           "--level", "1", "--margin", "0.1", "--shots", "1,3", "--thresholds", "0.5", "--out", tmp_path / "res",
           "--no-cache")
    summary = json.loads((tmp_path / "res" / "summary.json").read_text(encoding="utf-8"))
    assert all("/" not in c for c in summary["classes"])
    assert summary["queries"]["evaluated"] > 0 and summary["margin"] == 0.1


def test_eval_refuses_bad_options_with_a_message(part_crops, tmp_path):
    result = CliRunner().invoke(app, ["eval", "--support", str(part_crops.support), "--query", str(part_crops.query),
                                      "--backbone", "pixels", "--shots", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "shots" in result.output
    result = CliRunner().invoke(app, ["eval", "--support", str(tmp_path / "none"), "--query", str(part_crops.query),
                                      "--backbone", "pixels", "--out", str(tmp_path), "--no-cache"])
    assert result.exit_code == 2 and "support folder not found" in result.output
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "support.txt").write_text("x", encoding="utf-8")  # was "support folder not found" too
    result = CliRunner().invoke(app, ["eval", "--support", str(tmp_path / "in" / "support.txt"), "--query",
                                      str(part_crops.query), "--backbone", "pixels", "--out", str(tmp_path / "out"),
                                      "--no-cache"])
    assert result.exit_code == 2 and "support.txt: a file, not a folder" in " ".join(result.output.split())


def test_a_query_folder_typed_full_width_is_its_class_not_unknown(tmp_path):
    for root, name in ((tmp_path / "support", "BBU"), (tmp_path / "query", "ＢＢＵ")):
        for i in range(2):
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (200, 10 * i, 0)).save(root / name / f"{i}.png")
    (tmp_path / "support" / "fan").mkdir()
    Image.new("RGB", (16, 16), (0, 0, 200)).save(tmp_path / "support" / "fan" / "0.png")
    invoke("eval", "--support", tmp_path / "support", "--query", tmp_path / "query", "--backbone", "pixels:8",
           "--shots", "1", "--thresholds", "0.5", "--out", tmp_path / "res", "--no-cache")
    summary = json.loads((tmp_path / "res" / "summary.json").read_text(encoding="utf-8"))
    assert summary["queries"]["per_truth"] == {"BBU": 2} and summary["queries"]["unknown_truth"] == 0


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_overwrite_refuses_a_file_put_among_its_results_and_still_replaces_its_own_edited(part_crops, tmp_path):
    from bbuvl.cli import app as bbuvl  # which records what a command wrote as its own when it ends

    out = tmp_path / "res"

    def evaluate(where: Path, *more: str):
        return CliRunner().invoke(bbuvl, ["fewshot", "eval", "--support", str(part_crops.support), "--query",
                                          str(part_crops.query), "--backbone", "pixels:8", "--shots", "1,all",
                                          "--thresholds", "-0.5,0.5", "--no-cache", "--out", str(where), *more],
                                  env={"COLUMNS": "300"})
    assert (first := evaluate(out)).exit_code == 0, first.output
    written = (out / "metrics.csv").read_text(encoding="utf-8")
    (out / "metrics.csv").write_text("edited\n", encoding="utf-8")  # its own name: --overwrite gives it up, as before
    (out / "confusion" / "shotsall_t-0.50.csv").write_text("edited\n", encoding="utf-8")
    (out / "notes.txt").write_text("field notes", encoding="utf-8")
    (out / "confusion" / "mine.csv").write_text("mine", encoding="utf-8")
    (tmp_path / "beside.txt").write_text("mine", encoding="utf-8")

    r = evaluate(out, "--overwrite")
    # Before: exit 0, notes.txt and confusion/mine.csv deleted with the folder.
    assert r.exit_code == 2, r.output
    assert ("holds confusion/mine.csv, notes.txt, which `bbuvl fewshot eval` did not write"
            in " ".join(r.output.split())), r.output
    assert (out / "notes.txt").read_text(encoding="utf-8") == "field notes"
    assert (out / "confusion" / "mine.csv").read_text(encoding="utf-8") == "mine"
    assert (out / "metrics.csv").read_text(encoding="utf-8") == "edited\n"

    (out / "notes.txt").unlink()
    (out / "confusion" / "mine.csv").unlink()
    assert (again := evaluate(out, "--overwrite")).exit_code == 0, again.output
    assert (out / "metrics.csv").read_text(encoding="utf-8") == written
    assert (out / "confusion" / "shotsall_t-0.50.csv").read_text(encoding="utf-8") != "edited\n"
    assert (tmp_path / "beside.txt").read_text(encoding="utf-8") == "mine"

    notes = tmp_path / "notes.txt"  # a file where it writes its folder: deleted with it, before
    notes.write_text("mine", encoding="utf-8")
    r = evaluate(notes, "--overwrite")
    assert r.exit_code == 2 and "a file `bbuvl fewshot eval` did not write" in " ".join(r.output.split()), r.output
    assert notes.read_text(encoding="utf-8") == "mine"
