"""bench/small_parts.py scores one pass, tiles and zoom on one checkpoint and prints tokens, time and AP by size."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bench_runner import run_bench_in_process

BENCH = Path(__file__).resolve().parents[1] / "bench" / "small_parts.py"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_bench_prints_every_plan_with_its_tokens_beside_the_prior(trained_checkpoint, small_dataset):
    args = ["--checkpoint", str(trained_checkpoint), "--val", str(small_dataset / "val.jsonl"), "--grid", "2x2",
            "--containers", "bbu基带处理单元", "--category", "螺丝连接点"]
    code, stdout, stderr = run_bench_in_process(BENCH, args)
    assert code == 0, stdout + stderr
    assert re.search(r"best constant box AP50 \d\.\d{3} per label, \d\.\d{3} class-agnostic", stdout), stdout
    tokens = {}
    for plan in ("one pass", "tiles 2x2", "tiles 2x2 + whole", "zoom"):
        row = re.search(rf"^{re.escape(plan)}\s+(\d+)\s+(\d+\.\d+)\s", stdout, re.M)
        assert row, (plan, stdout)
        tokens[plan] = int(row.group(1))
    # Each tile holds about the whole frame's tokens: four tiles cost about four passes, plus one with the whole photo.
    assert 3 * tokens["one pass"] <= tokens["tiles 2x2"] <= 5 * tokens["one pass"]
    assert tokens["tiles 2x2 + whole"] > tokens["tiles 2x2"]
    assert re.search(r"objects per bucket: <1 token \d+, 1-4 tokens \d+", stdout)
    assert re.search(r"L1\s+螺丝连接点", stdout)  # the category's own AP50 has its column
