"""bench/small_shapes_one_pass.py trains the whole-photo recipe per seed and appends one scored row per run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "small_shapes_one_pass.py"


@pytest.mark.slow  # a training subprocess: minutes on a shared 2-core machine
def test_bench_appends_a_scored_row_per_seed_and_skips_it_on_a_rerun(tmp_path):
    out = tmp_path / "runs.jsonl"
    args = ["--seeds", "1", "--steps", "2", "--train", "8", "--val", "2", "--eval-every", "1", "--out", str(out),
            "detection.fine_features=true"]
    env = {**os.environ, "PYTHONPATH": str(BENCH.parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["seed"] == 1 and row["overrides"] == ["detection.fine_features=true"]
    assert sorted(row["curve"], key=int) == ["1", "2"] and row["final"]["tokens"] == 192
    assert 0 <= row["final"]["AP50_agnostic"] <= 1 and row["prior_ap50"] >= 0
    again = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and len(out.read_text().splitlines()) == 1
    two = subprocess.run([sys.executable, str(BENCH), *args, "--procs", "2"], capture_output=True, text=True, timeout=300,
                         env=env)
    assert two.returncode == 0, two.stdout + two.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("procs", 1) for r in rows] == [1, 2] and sorted(rows[1]["curve"], key=int) == ["1", "2"]
    assert "2 processes" in two.stdout
