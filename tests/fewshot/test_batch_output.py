"""`fewshot classify`'s CSV opened in a spreadsheet: a cell of user text that starts like a formula stays text."""

from __future__ import annotations

import csv
import json

import pytest

from bbuvl.fewshot.batch import FIELDS, write_rows
from tests.fewshot.test_hostile_input import invoke, photos

FORMULAS = ["=1+2", "+SUM(A1)", "-2+3", "@cmd"]


def read_csv(path) -> list[dict]:
    """The rows of a written CSV file, as a spreadsheet's import would split them."""
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_classify_csv_neutralises_class_names_that_start_like_a_formula_and_the_jsonl_keeps_them(tmp_path):
    support = photos(tmp_path / "support", {name: 1 for name in FORMULAS})
    query = photos(tmp_path / "query", {name: 1 for name in FORMULAS})
    for suffix in (".csv", ".jsonl"):
        code, said = invoke("classify", "--support", support, "--query", query, "--backbone", "pixels:8",
                            "--out", tmp_path / f"o{suffix}", "--threshold", "-1", "--no-cache")
        assert code == 0, said
    rows = read_csv(tmp_path / "o.csv")
    assert len(rows) == len(FORMULAS)
    # Before: label '=1+2' written as is, which a spreadsheet runs as a formula (CSV injection, OWASP).
    for row in rows:
        for key in ("label", "truth", "best_class", "second_class"):
            assert row[key][0] == "'" and row[key][1:] in FORMULAS, (key, row[key])
    assert sorted(row["truth"][1:] for row in rows) == sorted(FORMULAS)
    lines = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(line["truth"] for line in lines) == sorted(FORMULAS)
    assert all(line["label"] in FORMULAS for line in lines)


def test_csv_neutralises_tab_and_carriage_return_and_leaves_numbers_and_plain_text(tmp_path):
    row = {k: None for k in FIELDS}
    row.update(query="\tq", image="\rimg.png", truth="线缆", label="plain", best_class="plain", score=-0.25,
               second_class="a-b", second_score=-0.5, margin=0.25, confidence="low", box=[1.0, 2.0, 3.0, 4.0])
    assert write_rows([row], tmp_path / "o.csv") == 1
    [got] = read_csv(tmp_path / "o.csv")
    assert got["query"] == "'\tq" and got["image"] == "'\rimg.png"
    assert (got["truth"], got["label"], got["second_class"]) == ("线缆", "plain", "a-b")
    assert (got["score"], got["second_score"], got["box"]) == ("-0.25", "-0.5", "[1.0, 2.0, 3.0, 4.0]")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_csvs_neutralise_class_names_and_query_paths_that_start_like_a_formula(tmp_path):
    support = photos(tmp_path / "support", {name: 2 for name in FORMULAS})
    query = photos(tmp_path / "query", {name: 1 for name in FORMULAS})
    code, said = invoke("eval", "--support", support, "--query", query, "--backbone", "pixels:8", "--shots", "1",
                        "--thresholds", "0.5", "--out", tmp_path / "res", "--no-cache")
    assert code == 0, said
    tables = sorted((tmp_path / "res").rglob("*.csv"))
    assert {p.name for p in tables} >= {"queries.csv", "per_class.csv", "metrics.csv", "shots1_t0.50.csv"}
    for table in tables:
        with open(table, encoding="utf-8", newline="") as fh:
            cells = [cell for row in csv.reader(fh) for cell in row]
        # Before: the class names, in the cells and in a confusion matrix's header, were written as they are.
        risky = [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r")) and not _number(c)]
        assert not risky, (table.name, risky)
    matrix = read_csv(tmp_path / "res" / "confusion" / "shots1_t0.50.csv")
    assert sorted(list(matrix[0])[1:-1]) == sorted("'" + name for name in FORMULAS)


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
