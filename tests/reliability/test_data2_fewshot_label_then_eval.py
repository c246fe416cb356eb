"""`fewshot label` then `fewshot eval` on what it wrote: the queries' truth is the classifier's own answers, so the
same support scored 1.000 without a word. The evaluation says how many queries are labelled so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.test_data2_moved_predictions import project, run

WARNING = "queries are labelled as `fewshot label` answered them"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_of_what_fewshot_label_wrote_says_its_truth_is_the_classifiers_own(tmp_path: Path):
    preds = project(tmp_path / "site")
    support, labelled, cache = tmp_path / "site" / "support", tmp_path / "labelled.jsonl", tmp_path / "cache"
    common = ["--support", support, "--backbone", "pixels:8", "--cache", cache]
    code, said = run("label", "--predictions", preds, "--out", labelled, "--threshold", "-1", *common)
    assert code == 0, said
    code, said = run("eval", "--query", labelled, "--out", tmp_path / "ev", "--shots", "all", "--thresholds", "-1",
                     *common)
    assert code == 0, said
    assert f"2 of 2 {WARNING} (the first: {labelled}:1 objects[0])" in said, said
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text(encoding="utf-8"))
    assert any(WARNING in w for w in summary["warnings"]), summary["warnings"]

    # A label a person corrected is truth again: only the other query is counted.
    rows = [json.loads(line) for line in labelled.read_text(encoding="utf-8").splitlines()]
    first = rows[0]["objects"][0]
    first["desc"] = next(c for c in ("标签贴纸", "线缆") if c != first["extra"]["fewshot_best"])
    labelled.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    code, said = run("eval", "--query", labelled, "--out", tmp_path / "ev", "--shots", "all", "--thresholds", "-1",
                     *common)
    assert code == 0 and f"1 of 2 {WARNING} (the first: {labelled}:2 objects[0])" in said, said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_of_a_dataset_people_labelled_says_nothing_of_it(tmp_path: Path):
    project(tmp_path / "site")
    dataset = tmp_path / "site" / "truth.jsonl"
    dataset.write_text(json.dumps({"images": ["photos/b.jpg"], "width": 64, "height": 48, "objects": [
        {"bbox_2d": [4, 4, 40, 40], "desc": "线缆", "extra": {"备注": "逆光"}}]}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    code, said = run("eval", "--query", dataset, "--out", tmp_path / "ev", "--support", tmp_path / "site" / "support",
                     "--backbone", "pixels:8", "--shots", "all", "--thresholds", "0.5", "--cache", tmp_path / "cache")
    assert code == 0 and WARNING not in said, said


def test_the_check_fewshot_label_prints_runs_as_printed_with_its_hierarchy_and_a_bracketed_name(tmp_path: Path):
    import shlex
    import shutil

    from typer.testing import CliRunner

    from bbuvl.cli.data import app as data
    from bbuvl.data.labels import DEFAULT_HIERARCHY

    preds = project(tmp_path / "site")
    support = tmp_path / "site" / "support"
    shutil.move(support / "线缆", support / "新部件")  # a new part type, named by a copy of the hierarchy
    hierarchy = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    hierarchy["categories"]["新部件"] = {"gloss": "new part", "attributes": {}}
    (tmp_path / "h [new].json").write_text(json.dumps(hierarchy, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "labelled [red] 1.jsonl"
    code, said = run("label", "--predictions", preds, "--out", out, "--threshold", "-1", "--hierarchy",
                     tmp_path / "h [new].json", "--support", support, "--backbone", "pixels:8", "--cache", tmp_path / "c")
    assert code == 0 and "新部件" in out.read_text(encoding="utf-8"), said
    printed = said.split("check it with `")[1].split("`")[0]
    args = shlex.split(printed)
    assert args[:3] == ["bbuvl", "data", "check"] and args[3] == str(out), printed
    result = CliRunner().invoke(data, args[2:])
    assert result.exit_code == 0, result.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_names_a_bracketed_cache_folder_as_typed(tmp_path: Path):
    project(tmp_path / "site")
    cache = tmp_path / "cache [red] 1"
    code, said = run("eval", "--query", tmp_path / "site" / "support", "--out", tmp_path / "ev", "--support",
                     tmp_path / "site" / "support", "--backbone", "pixels:8", "--shots", "all", "--thresholds", "0.5",
                     "--cache", cache)
    assert code == 0 and f"({cache / 'embeddings.sqlite'})" in said, said
