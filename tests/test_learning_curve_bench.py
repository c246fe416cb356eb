"""bench/learning_curve.py trains, evaluates every checkpoint in both modes and prints one row per checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bench_runner import run_bench_in_process

BENCH = Path(__file__).resolve().parents[1] / "bench" / "learning_curve.py"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_bench_prints_ap50_for_every_mode_at_every_checkpoint_beside_the_prior():
    args = ["--scenes", "shapes", "--steps", "2", "--every", "1", "--train", "8", "--val", "2"]
    code, stdout, stderr = run_bench_in_process(BENCH, args)
    assert code == 0, stdout + stderr
    assert re.search(r"best constant box \d\.\d{3} / \d\.\d{3}", stdout), stdout
    rows = [line.split() for line in stdout.splitlines() if re.match(r"\s+default\s+\d+\s", line)]
    assert [r[1] for r in rows] == ["1", "2"], stdout
    for r in rows:  # model, step, then per label / agnostic for head, name and generate
        values = [float(v) for v in r[2:] if v != "/"]
        assert len(values) == 6 and all(0.0 <= v <= 1.0 for v in values), r


def test_bench_rejects_an_unknown_scene_or_model_shape():
    for args, message in ((["--scenes", "cats"], "unknown cats"), (["--shapes", "huge"], "unknown huge")):
        code, _, stderr = run_bench_in_process(BENCH, args)
        assert code == 2 and message in stderr, stderr
