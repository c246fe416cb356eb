"""`fewshot classify`'s own results, or a predictions file of no detection, given as the queries of the next step.
Its .jsonl results have an `image` on each line, so they were read as `bbuvl predict`'s lines: classify wrote a
results file of no row with exit 0, label said one photo was on two lines, eval said no query could be evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.test_data2_moved_predictions import project, run


def common(root: Path) -> list[str | Path]:
    """The support, backbone and cache every command here takes."""
    return ["--support", root / "support", "--backbone", "pixels:8", "--cache", root / "cache"]


@pytest.mark.parametrize("step", ["classify", "label", "eval"])
def test_classifys_results_given_as_queries_are_named_as_its_results(tmp_path: Path, step: str):
    preds = project(tmp_path)
    results = tmp_path / "answers.jsonl"
    code, said = run("classify", "--query", preds, "--out", results, *common(tmp_path))
    assert code == 0, said
    out = tmp_path / ("again" if step == "eval" else "again.csv" if step == "classify" else "again.jsonl")
    query = ["--predictions", results] if step == "label" else ["--query", results]
    code, said = run(step, *query, "--out", out, *common(tmp_path))
    assert code == 2, said
    assert f"{results}:1: a line of `fewshot classify`'s results (one answer per query), not of `bbuvl predict`" in said
    assert not out.exists()


def test_classify_of_predictions_with_no_detection_writes_no_empty_result(tmp_path: Path):
    preds = project(tmp_path)
    lines = [json.loads(line) for line in preds.read_text(encoding="utf-8").splitlines()]
    code, said = run("classify", "--query", preds, "--out", tmp_path / "r.csv", "--min-score", "0.95", *common(tmp_path))
    assert code == 2 and f"{preds}: all 2 of its detections score below --min-score 0.95: nothing to classify" in said
    preds.write_text("".join(json.dumps(dict(x, objects=[])) + "\n" for x in lines), encoding="utf-8")
    code, said = run("classify", "--query", preds, "--out", tmp_path / "r.csv", *common(tmp_path))
    assert code == 2 and f"{preds}: none of its 2 photo(s) has a detection: nothing to classify" in said, said
    assert not (tmp_path / "r.csv").exists()


def test_classifys_results_given_to_data_commands_are_named_as_its_results(tmp_path: Path):
    from typer.testing import CliRunner

    from bbuvl.cli.data import app as data

    preds = project(tmp_path)
    results = tmp_path / "answers.jsonl"
    assert run("classify", "--query", preds, "--out", results, *common(tmp_path))[0] == 0
    for step in (["check", results], ["split", results, tmp_path / "split"]):
        said = " ".join(CliRunner().invoke(data, [str(a) for a in step]).output.split())
        assert f"{results}: few-shot answers (what `bbuvl fewshot classify` writes), not a JSONL dataset" in said, said


@pytest.mark.parametrize("step", ["classify", "eval"])
def test_a_dataset_folder_given_as_the_support_is_named_as_one(tmp_path: Path, step: str):
    from bbuvl.synthetic.dataset import synthesize

    synthesize(tmp_path / "ds", 3, 1, seed=3, size=(160, 120), num_teachers=1)
    project(tmp_path / "site")
    out = tmp_path / ("out" if step == "eval" else "out.csv")
    code, said = run(step, "--support", tmp_path / "ds", "--query", tmp_path / "site" / "support", "--out", out,
                     "--backbone", "pixels:8", "--cache", tmp_path / "cache")
    # Its photos were one class, 'images': every answer that class or Unknown, with exit 0.
    assert code == 2 and f"{tmp_path / 'ds'}: a dataset folder (it holds train.jsonl), not a support folder" in said, said
    assert not out.exists()
