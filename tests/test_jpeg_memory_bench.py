"""bench/jpeg_memory.py: what a progressive JPEG's decoder holds beyond the baseline photo's, at any scale, is what
data/read_cost.py charges it (2 bytes a sample), and reading it whole costs no more than the limit charges it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bbuvl.data.read_cost import PIXEL_BYTES

BENCH = Path(__file__).resolve().parents[1] / "bench" / "jpeg_memory.py"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_progressive_jpeg_holds_what_it_is_charged_and_no_more(tmp_path):
    out = tmp_path / "peaks.json"
    # Its own interpreter: each photo is read in a fresh process, whose peak the bench reads.
    run = subprocess.run([sys.executable, str(BENCH), "--sides", "2000", "--json", str(out)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = json.loads(out.read_text(encoding="utf-8"))["2000"]
    progressive = {kind: row for kind, row in rows.items() if "held" in row}
    assert {row["charged"] for row in progressive.values()} == {2.0, 3.0, 6.0}
    for kind, row in progressive.items():
        assert 0.8 * row["charged"] <= row["held"] <= 1.05 * row["charged"], (kind, row)
        # whole, no more than its pixels and its coefficients, in 8-bit photos read whole
        assert row["whole"] <= (1 + row["charged"] / PIXEL_BYTES) * rows["4:2:0 baseline"]["whole"], (kind, rows)
    assert "held" in run.stdout and "charged" in run.stdout
