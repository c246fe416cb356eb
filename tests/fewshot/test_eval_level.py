"""`fewshot eval --level`: the answers are cut to the level the dataset's labels are, so a support set of full labels
is evaluated at that level, not against truths none of its classes can be."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from bbuvl.cli.fewshot import app
from bbuvl.data.labels import label_at_level
from bbuvl.data.schema import read_records
from bbuvl.fewshot.support import UNKNOWN


def evaluated_at_level_1(part_crops, tmp_path, thresholds: str):
    """The output folder of `fewshot eval --level 1` of the full-label support set over the validation crops."""
    out = tmp_path / "res"
    result = CliRunner().invoke(app, [str(a) for a in (
        "eval", "--support", part_crops.support, "--query", part_crops.data / "val.jsonl", "--backbone", "pixels:8",
        "--level", "1", "--shots", "all", "--thresholds", thresholds, "--out", out, "--no-cache")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def test_a_support_of_full_labels_is_scored_at_the_level_the_query_labels_are_cut_to(part_crops, tmp_path):
    out = evaluated_at_level_1(part_crops, tmp_path, "-1,0.5")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    categories = {label_at_level(c, 1) for c in part_crops.known}
    assert any("/" in c for c in part_crops.known)  # a support class deeper than the level
    assert summary["classes"] == sorted(categories)
    truths = [label_at_level(o.desc, 1) for r in read_records(part_crops.data / "val.jsonl") for o in r.objects]
    # Unknown only where the category has no support at any depth: every query of such a category was Unknown before
    assert summary["queries"]["unknown_truth"] == sum(t not in categories for t in truths) < len(truths) // 2
    with (out / "queries.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # At threshold -1 nothing is rejected: a query is right when its best class is of its category
    right = sum(label_at_level(r["best_class"], 1) == r["truth"] for r in rows)
    first = next(r for r in summary["rows"] if r["threshold"] == -1)
    assert first["accuracy"] == round(right / len(rows), 6) and first["predicted_unknown"] == 0
    with (out / "confusion" / "shotsall_t-1.00.csv").open(encoding="utf-8") as fh:
        assert next(csv.reader(fh))[1:] == sorted(categories) + [UNKNOWN]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_queries_labelled_below_a_support_class_are_said_to_be_counted_unknown_with_the_way_to_score_them(
        part_crops, tmp_path):
    from bbuvl.fewshot.crops import write_crops

    support = tmp_path / "support"
    write_crops(part_crops.data / "train.jsonl", support, per_class=2, level=1)  # support/螺丝连接点/, ...
    val = part_crops.data / "val.jsonl"
    deep = [o.desc for r in read_records(val) for o in r.objects if "/" in o.desc]
    args = ["eval", "--support", support, "--backbone", "pixels:8", "--shots", "all", "--thresholds", "0.5",
            "--no-cache"]
    for query, extra, fix in ((val, [], "give --level 1"), (part_crops.query, [], "a folder per support class"),
                              (val, ["--level", "1"], None), (val, ["--level", "2"], "give --level 1")):
        out = tmp_path / f"res{len(list(tmp_path.iterdir()))}"
        result = CliRunner().invoke(app, [str(a) for a in (*args, "--query", query, "--out", out, *extra)])
        assert result.exit_code == 0, result.output + repr(result.exception)
        warnings = json.loads((out / "summary.json").read_text(encoding="utf-8"))["warnings"]
        said = [w for w in warnings if "below a support class" in w]
        if fix is None:
            assert not said, said
            continue
        assert len(said) == 1 and fix in said[0], warnings
        counted = json.loads((out / "summary.json").read_text(encoding="utf-8"))["queries"]["unknown_truth"]
        assert said[0].startswith(f"{counted} of ") and (query != val or extra or counted == len(deep))
        assert " ".join(result.output.split()).count("below a support class") == 1


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_queries_csv_names_the_classes_at_the_level_its_truths_are(part_crops, tmp_path):
    out = evaluated_at_level_1(part_crops, tmp_path, "-1")
    categories = {label_at_level(c, 1) for c in part_crops.known}
    assert len(categories) < len(part_crops.known) and len(categories) > 1  # two support classes share a category
    with (out / "queries.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["best_class"] for r in rows} <= categories and {r["second_class"] for r in rows} <= categories
    # The runner-up is the next category: a sibling class of the best one's category is no other answer at the level
    assert all(r["second_class"] != r["best_class"] for r in rows)
    assert all(float(r["margin"]) == round(float(r["score"]) - float(r["second_score"]), 6) >= 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    right = sum(r["best_class"] == r["truth"] for r in rows)
    assert summary["rows"][0]["accuracy"] == round(right / len(rows), 6)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_summary_counts_the_support_images_of_each_class_eval_used(part_crops, tmp_path):
    # `support_images` was keyed by the support's own classes (螺丝连接点/BBU安装螺丝/连接正确, ...) where every other
    # key of the summary, its tables and plots name the classes at the level (螺丝连接点): no reader could join them
    out = evaluated_at_level_1(part_crops, tmp_path, "0.5")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    counts = {c: len(list((part_crops.support / c).glob("*"))) for c in part_crops.known}
    at_level: dict[str, int] = {}
    for c, n in counts.items():
        at_level[label_at_level(c, 1)] = at_level.get(label_at_level(c, 1), 0) + n
    assert summary["support_images"]["all"] == at_level
    assert list(summary["support_images"]["all"]) == summary["classes"]
    assert set(summary["queries"]["per_truth"]) <= set(summary["classes"]) | {UNKNOWN}
