"""A test that never runs is not a test: every run ends with its skips counted by reason, and a skip for a program
the setup says it installed (BBUVL_REQUIRE) is a failure."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

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


def _run(tmp_path: Path, monkeypatch, capsys, **env: str) -> tuple[int, str]:
    """Pytest on TESTS with the suite's own conftest as a plugin (the same hook a `make test` run ends with): its exit
    code and what it printed. In this process: a pytest of its own was ~7 s of start-up (torch, through the conftest)."""
    (tmp_path / "test_example.py").write_text(TESTS, encoding="utf-8")
    for name in ("BBUVL_REQUIRE", "CI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    capsys.readouterr()
    try:
        # importlib mode: the example module joins no sys.path the suite's own tests use
        code = pytest.main(["-q", "-s", "-p", "no:cacheprovider", "-p", "tests.conftest", "--import-mode=importlib",
                            "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)])
    finally:
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
                del sys.modules[name]
    return int(code), capsys.readouterr().out


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_run_ends_with_its_skips_counted_by_reason(tmp_path, monkeypatch, capsys):
    code, out = _run(tmp_path, monkeypatch, capsys)
    assert code == 0, out
    summary = out[out.index("not run: 4 skipped"):]
    lines = [line.strip() for line in summary.splitlines()[1:4]]
    assert lines == ["2  reason A", "1  no Chromium in this test", "1  reason B"], summary


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_skip_for_a_program_the_setup_installed_fails_the_run(tmp_path, monkeypatch, capsys):
    code, out = _run(tmp_path, monkeypatch, capsys, BBUVL_REQUIRE="cjk-font chromium", CI="true")
    assert code == 1, out
    assert "1 failed" in out and "BBUVL_REQUIRE says the setup installed chromium" in out
    assert "not run: 3 skipped" in out
