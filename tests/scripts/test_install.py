"""scripts/install.py hands uv the settings pip would use: its files' sections and PIP_* variables, in pip's order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts import install


@pytest.fixture
def pip_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PIP_* variable of the machine's leaks in."""
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)


def test_sections_and_variables_in_pips_order(pip_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment wins over [install], which wins over [global]; lists keep every value; unknown keys stay out."""
    config = tmp_path / "pip.conf"  # read after the machine's files, so it sets every key the script reads
    config.write_text(
        "[global]\nfind-links = /wheels/a\nindex-url = https://mirror.example/simple\ntimeout = 60\n"
        "extra-index-url =\n    https://one.example/simple\n    https://two.example/simple\n"
        "constraint = /pins/machine.txt\ncert = /certs/global.pem\n"
        "[install]\nindex-url = https://install.example/simple\ncert = /certs/bundle.pem\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_FIND_LINKS", "/wheels/b /wheels/c")
    assert install.pip_settings() == {
        "find-links": ["/wheels/b", "/wheels/c"],
        "index-url": ["https://install.example/simple"],
        "extra-index-url": ["https://one.example/simple", "https://two.example/simple"],
        "constraint": ["/pins/machine.txt"],
        "cert": ["/certs/bundle.pem"],
    }


def test_no_configuration_gives_no_options(pip_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a pip configuration (PIP_CONFIG_FILE=/dev/null reads no file) uv runs on its own defaults."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    assert install.pip_settings() == {}


def test_torch_pin_is_the_constraints_line() -> None:
    """The pin installed first is the one constraints.txt holds."""
    pins = [line for line in install.CONSTRAINTS.read_text().splitlines() if line.startswith("torch==")]
    assert install.torch_pin() == pins[0]
