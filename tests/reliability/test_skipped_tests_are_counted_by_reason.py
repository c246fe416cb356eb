"""A test that never runs is not a test: every run ends with its skips counted by reason, and a skip for a program
the setup says it installed (BBUVL_REQUIRE) is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
TESTS = '''
import pytest
from tests.system import need

@pytest.mark.parametrize("i", [1, 2])
def test_a(i):
    pytest.skip("reason A")

@pytest.mark.skipif(True, reason="reason B")
def test_b():
    pass

def test_runs():
    pass

def test_needs_chromium():
    need("chromium", False, "no Chromium in this test")
'''


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_example.py").write_text(TESTS, encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k not in ("BBUVL_REQUIRE", "CI")} | env
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), environ.get("PYTHONPATH"))))
    # The suite's own conftest as a plugin: the same hook a `make test` run ends with.
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                           "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=environ, cwd=tmp_path)


def test_the_run_ends_with_its_skips_counted_by_reason(tmp_path):
    out = _run(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = out.stdout[out.stdout.index("not run: 4 skipped"):]
    lines = [line.strip() for line in summary.splitlines()[1:4]]
    assert lines == ["2  reason A", "1  no Chromium in this test", "1  reason B"], summary


def test_a_skip_for_a_program_the_setup_installed_fails_the_run(tmp_path):
    out = _run(tmp_path, BBUVL_REQUIRE="cjk-font chromium", CI="true")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed" in out.stdout and "BBUVL_REQUIRE says the setup installed chromium" in out.stdout
    assert "not run: 3 skipped" in out.stdout
