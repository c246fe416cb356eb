"""bench/near_miss.py trains its arms, scores every checkpoint beside the constant box, and reuses kept runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.bench_runner import run_bench_in_process

# A bench's own check, not the product's: it trains three arms end to end (about 15 s), so it runs with the slow tests (`make test-all`).
pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench" / "near_miss.py"


def _rows(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if re.match(r"\s+sft\S*\s+\d+\s", line)]


def test_bench_prints_each_arm_at_each_checkpoint_and_scores_kept_runs_on_another_seed(tmp_path):
    args = ["--arms", "sft,sft+ground,sft+ground>grpo", "--sft-steps", "2", "--sft-every", "1", "--grpo-steps", "1",
            "--every", "1", "--train", "8", "--heldout", "2", "--work", str(tmp_path)]
    code, stdout, stderr = run_bench_in_process(BENCH, args)
    assert code == 0, stdout + stderr
    assert re.search(r"best constant box AP50 \d\.\d{3} / \d\.\d{3}", stdout), stdout
    rows = _rows(stdout)
    assert [(r[0], r[1]) for r in rows] == [("sft", "1"), ("sft", "2"), ("sft+ground", "1"), ("sft+ground", "2"),
                                           ("sft+ground>grpo", "3")], stdout
    for r in rows:  # arm, step, AP50 per label / agnostic, detection reward
        values = [float(v) for v in r[2:] if v != "/"]
        assert len(values) == 3 and all(0.0 <= v <= 1.0 for v in values), r
    # The same folder scored on photos of another seed: nothing is trained again.
    code, again, stderr = run_bench_in_process(BENCH, [*args, "--heldout-seed", "8"])
    assert code == 0, again + stderr
    assert again.count("reusing the finished run") == 3 and len(_rows(again)) == len(rows), again
    assert (tmp_path / "heldout-seed8" / "val.jsonl").exists()


def test_bench_refuses_to_hold_out_its_own_training_seed():
    code, _, stderr = run_bench_in_process(BENCH, ["--seed", "7", "--heldout-seed", "7"])
    assert code == 2 and "--heldout-seed must differ from --seed" in stderr, stderr
