"""The few-shot benchmarks run and pass their own bars (slow: minutes on two CPU cores)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.slow
def test_memory_stays_flat_over_5000_crops():
    result = subprocess.run([sys.executable, str(BENCH / "fewshot_memory.py")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


@pytest.mark.slow
def test_second_eval_run_is_at_least_5x_faster_and_embeds_nothing():
    result = subprocess.run([sys.executable, str(BENCH / "fewshot_cache.py")], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
