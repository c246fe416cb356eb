"""bench/query_coverage.py: where the parts lose their box, read off a real checkpoint's head."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench_runner import run_bench_in_process

BENCH = Path(__file__).resolve().parents[1] / "bench" / "query_coverage.py"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_bench_counts_every_part_once_per_column_and_no_choice_of_queries_beats_all_proposals(
        trained_checkpoint, small_dataset, tmp_path):
    out = tmp_path / "coverage.jsonl"
    val = small_dataset / "val.jsonl"
    code, stdout, stderr = run_bench_in_process(BENCH, ["--checkpoint", str(trained_checkpoint), "--val", str(val),
                                                        "--distinct", "0.7", "--json", str(out)])
    assert code == 0, stdout + stderr
    row = json.loads(out.read_text(encoding="utf-8"))
    expected_parts = sum(len(json.loads(line)["objects"]) for line in val.read_text(encoding="utf-8").splitlines())
    assert row["parts"]["ALL"] == expected_parts > 0
    covered = row["covered"]
    assert set(covered) == {"all proposals", "top-k", "distinct 0.7", "decoder", "decoder 0.7"}
    for column in ("top-k", "distinct 0.7"):  # the queries start from proposals: a subset of them
        assert all(covered[column][k] <= covered["all proposals"][k] + 1e-9 for k in row["parts"])
    assert all(0 <= v <= 1 for c in covered.values() for v in c.values())
    assert "share of parts covered at IoU >= 0.5" in stdout and "ALL" in stdout
