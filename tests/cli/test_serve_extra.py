"""`bbuvl serve` where a plain `pip install bbuvl` left out the [serve] extra: one line naming what is missing and the
command that installs it, where it was a 40-line traceback ending in "No module named 'uvicorn'"."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from typer.testing import CliRunner

from bbuvl.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _uninstalled(monkeypatch: pytest.MonkeyPatch, modules: list[str]) -> None:
    """`modules` as if not installed (an import raises ModuleNotFoundError), and bbuvl.serve not imported yet."""
    for name in [m for m in sys.modules if m == "bbuvl.serve" or m.startswith("bbuvl.serve.")]:
        monkeypatch.delitem(sys.modules, name)
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize("modules, named", [
    (["uvicorn"], "uvicorn is not installed"),
    (["fastapi", "starlette", "uvicorn", "python_multipart", "multipart", "prometheus_client"],
     "fastapi, uvicorn, python-multipart, prometheus-client are not installed"),
])
def test_serve_without_its_extra_says_what_is_missing_and_how_to_install_it_in_one_line(monkeypatch, tmp_path, modules,
                                                                                        named):
    _uninstalled(monkeypatch, modules)
    result = CliRunner().invoke(app, ["serve", "-c", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    [line] = result.stderr.replace("\n", " ").strip().splitlines()
    assert named in line and 'pip install -c constraints.txt -e ".[serve]"' in line, line


def test_the_modules_checked_are_those_of_pyprojects_serve_extra():
    from bbuvl.cli.serve import SERVE_EXTRA

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve"]
    assert sorted(SERVE_EXTRA) == sorted(Requirement(r).name for r in extra)
