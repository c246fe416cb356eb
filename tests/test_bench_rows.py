"""The benches whose rows a child process runs, each row run here at its smallest size in this process: a row
builds its run from a shipped config and its own overrides, so a check added to the run's inputs since the bench
was written fails here rather than at the end of a user's sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench_runner import run_bench_in_process

BENCH = Path(__file__).resolve().parents[1] / "bench"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_grounding_memory_row_runs_at_a_batch_other_than_the_configs(tmp_path):
    from bbuvl.synthetic.shapes import synthesize_shapes
    from bbuvl.tiny.model import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    synthesize_shapes(tmp_path / "data", 2, 0, seed=3, size=(112, 112), min_objects=1, max_objects=1)
    # configs/demo_shapes.yaml trains batches of 8; the row is a batch of 2 with a vision budget for 2.
    code, out, err = run_bench_in_process(BENCH / "grounding_memory.py", [
        "--arm", "rows", "--model", str(model), "--data", str(tmp_path / "data"), "--size", "112", "--batch", "2",
        "--steps", "1"])
    assert code == 0, err[-3000:]
    row = json.loads(out.strip().splitlines()[-1])
    assert row["vision_tokens"] == 16 and row["length"] > 16 and row["saved_mb"] > 0
