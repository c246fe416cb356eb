"""bench/head_convergence.py runs end to end on a few photos and reports both head variants."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bench_runner import run_bench_in_process

# A bench's own check, not the product's: it trains both head variants end to end (about 10 s), so it runs with the slow tests (`make test-all`).
pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench" / "head_convergence.py"


def test_bench_trains_both_variants_and_prints_their_ap50_side_by_side():
    args = ["--train", "6", "--val", "2", "--frame", "224x168", "--steps", "4", "--eval-every", "2", "--batch", "2"]
    code, stdout, stderr = run_bench_in_process(BENCH, args)
    assert code == 0, stdout + stderr
    rows = [line.split() for line in stdout.splitlines() if re.match(r"\s+\d+\s", line)]
    assert [r[0] for r in rows] == ["2", "4"]
    for r in rows:  # step, agnostic / per label for learned queries, then for two-stage
        values = [float(v) for v in r[1:] if v != "/"]
        assert len(values) == 4 and all(0.0 <= v <= 1.0 for v in values), r
    assert "two-stage / learned queries after 4 steps" in stdout


def test_bench_rejects_a_frame_off_the_token_grid_and_a_missing_dataset(tmp_path):
    for args, message in ((["--frame", "450x336"], "multiples of 28, got '450x336'"),
                          (["--data", str(tmp_path)], "no train.jsonl there")):
        code, _, stderr = run_bench_in_process(BENCH, args)
        assert code == 2 and message in stderr, stderr
