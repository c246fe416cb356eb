"""Every bench script still imports what it uses and answers `--help`: code moves under the benches (a function
renamed, a module split), and a bench is run by hand months later. The helper modules the benches import
(child_runs.py, gpu_rows.py, ...) have no command line and must import cleanly all the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_runner import run_bench_in_process

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_every_bench_imports_and_its_help_runs(script):
    code, out, err = run_bench_in_process(script, ["--help"])
    assert code == 0, err[-3000:]
    if "argparse" in script.read_text(encoding="utf-8") and "__main__" in script.read_text(encoding="utf-8"):
        assert out.startswith("usage: "), (out[:500], err[-500:])
