"""scripts/install.py: the venv checked before anything is installed; torch's CPU build or a refusal, never PyPI's
CUDA build; uv handed the settings pip would use (its files' sections and PIP_* variables, in pip's order), and pip
installing in uv's place only where uv could not run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from scripts import install

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pip_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PIP_* variable of the machine's leaks in."""
    for name in list(os.environ):
        if name.startswith("PIP_"):
            monkeypatch.delenv(name)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_sections_and_variables_in_pips_order(pip_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment wins over [install], which wins over [global]; lists keep every value; every key is read."""
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
        "timeout": ["60"],
    }


def test_no_configuration_gives_no_options(pip_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a pip configuration (PIP_CONFIG_FILE=/dev/null reads no file) uv runs on its own defaults."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    assert install.pip_settings() == {}


def test_torch_pin_is_the_constraints_line() -> None:
    """The pin installed first is the one constraints.txt holds."""
    pins = [line for line in install.CONSTRAINTS.read_text().splitlines() if line.startswith("torch==")]
    assert install.torch_pin() == pins[0]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_no_index_reaches_uv(pip_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """PIP_NO_INDEX (pip: wheel folders only, never an index) is uv's --no-index; uv resolved from pypi.org before."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", "/wheels")
    options, env, unpassed = install.uv_options(install.pip_settings())
    assert options == ["--find-links=/wheels", "--no-index"] and env == {} and unpassed == []
    assert install.uv_options({"no-index": ["false"]})[0] == []  # pip's spelling of no


def test_a_setting_uv_is_not_handed_leaves_the_install_to_pip() -> None:
    """Each pip setting is handed to uv, or known to change only how pip waits and prints, or named: pip installs."""
    settings = {"cert": ["/certs/a.pem"], "default-timeout": ["180"], "trusted-host": ["mirror.example"],
                "no-binary": [":all:"]}
    options, env, unpassed = install.uv_options(settings)
    assert options == [] and env == {"SSL_CERT_FILE": "/certs/a.pem"} and unpassed == ["no-binary", "trusted-host"]


def test_the_python_floor_read_is_pyprojects() -> None:
    """install.py reads requires-python without tomllib (it runs under any Python, to tell an old one so)."""
    required = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    floor = ".".join(map(str, install.required_python()))
    assert floor in required and f"{floor}.0" in required
    below = install.required_python()[:-1] + (install.required_python()[-1] - 1,)
    assert ".".join(map(str, below)) not in required


def test_the_linux_torch_is_the_cpu_build_and_keeps_constraints_version() -> None:
    """PyPI's Linux torch of the pinned version is the CUDA build (nvidia-* and cuda-* wheels, triton): the pin's +cpu."""
    assert install.cpu_torch("linux") == install.torch_pin() + "+cpu"
    assert install.cpu_torch("darwin") == install.cpu_torch("win32") == install.torch_pin()  # PyPI's: CPU already


def fake_installer(tmp_path: Path, statuses: list[int]) -> tuple[list[str], Path]:
    """A program standing in for pip or uv: it records its arguments, one JSON line a call, and exits with each of
    `statuses` in turn."""
    log, script = tmp_path / "calls.jsonl", tmp_path / "installer.py"
    script.write_text("import json, sys\n"
                      f"log = {str(log)!r}\n"
                      "with open(log, 'a') as f:\n"
                      "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
                      f"statuses = {statuses!r}\n"
                      "sys.exit(statuses[min(sum(1 for _ in open(log)), len(statuses)) - 1])\n")
    return [sys.executable, str(script)], log


def calls(log: Path) -> list[list[str]]:
    """The fake installer's arguments, call by call."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_torch_comes_from_pips_sources_first_then_pytorchs_cpu_index(tmp_path: Path) -> None:
    build = install.cpu_torch()
    command, log = fake_installer(tmp_path, [0])
    assert install.install_torch(command, None, no_index=False, not_found=lambda s: True) == 0
    assert calls(log) == [[build]]  # this machine's wheel folder: the index never asked
    log.unlink()
    command, log = fake_installer(tmp_path, [1, 0])
    assert install.install_torch(command, None, no_index=False, not_found=lambda s: True) == 0
    assert calls(log) == [[build], ["--extra-index-url", install.CPU_INDEX, build]]


@pytest.mark.parametrize("no_index", [False, True])
def test_torch_found_nowhere_is_refused_naming_the_build_never_taken_from_pypi(tmp_path: Path, no_index: bool) -> None:
    command, log = fake_installer(tmp_path, [1, 1])
    with pytest.raises(install.Refusal, match=r"torch's CPU build torch==.*\+cpu .* no other torch"):
        install.install_torch(command, None, no_index=no_index, not_found=lambda s: True)
    # no-index: no index at all, PyTorch's neither
    assert [c[-1] for c in calls(log)] == [install.cpu_torch()] * (1 if no_index else 2)


def test_uv_failing_to_run_is_handed_to_pip_and_uv_finding_no_solution_is_not(tmp_path: Path) -> None:
    """uv's own failure (exit 2: an index it cannot reach, a crash) lets pip install; its resolver's 'no solution'
    (exit 1) stops the install: pip would find none either, and printed a second, barer error after uv's clear one."""
    command, log = fake_installer(tmp_path, [2])
    uv = Path(command[1])  # run as a program: a file that starts with its interpreter
    uv.write_text(f"#!{sys.executable}\n" + uv.read_text())
    uv.chmod(0o755)
    assert install.with_uv(uv, "", keep_torch=False, settings={}) == 2  # main: "uv failed to run ... pip installs"
    log.unlink()
    command, log = fake_installer(tmp_path, [1])
    uv.write_text(f"#!{sys.executable}\n" + Path(command[1]).read_text())
    with pytest.raises(install.Refusal, match="no set of packages"):
        install.with_uv(uv, "dev", keep_torch=True, settings={})
    assert calls(log)[-1][-2:] == ["--editable", f"{ROOT}[dev]"]


def script_copy(tmp_path: Path, requires: str | None = None) -> Path:
    """scripts/install.py in a copy of the checkout's files it reads, pyproject.toml's requires-python replaced."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "install.py", tmp_path / "scripts")
    shutil.copy(ROOT / "constraints.txt", tmp_path)
    text = (ROOT / "pyproject.toml").read_text()
    if requires is not None:
        text = text.replace('requires-python = ">=3.11"', f'requires-python = "{requires}"')
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path / "scripts" / "install.py"


def venv_without_pip(folder: Path) -> Path:
    """A venv as one whose creation was cut short leaves it (a python, no pip); its python. Nothing installs into it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=60)
    return folder / "bin" / "python"


def test_too_old_a_python_is_told_at_once_what_to_run(tmp_path: Path) -> None:
    """It installed for minutes (torch included) and ended in pip's bare ResolutionImpossible, the venv kept."""
    script, python = script_copy(tmp_path, ">=3.99"), venv_without_pip(tmp_path / "venv")
    for args in (["--check"], ["dev"]):
        done = subprocess.run([str(python), str(script), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and done.stdout == "", done.stdout  # nothing was run
        assert f"is Python {sys.version_info[0]}.{sys.version_info[1]}" in done.stderr and ">= 3.99" in done.stderr
    assert "PYTHON=python3.99 make install" in done.stderr


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_help_prints_the_usage_and_an_option_it_lacks_installs_nothing(tmp_path: Path) -> None:
    """`install.py --help` took '--help' for the extras: it installed uv, then handed uv `.[--help]`, which uv could not
    parse, and pip was next. The Python here is too old for the copy's pyproject, so an install would stop at once,
    exit 1: what is checked is that none is begun."""
    script, python = script_copy(tmp_path, ">=3.99"), venv_without_pip(tmp_path / "venv")
    done = subprocess.run([str(python), str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "scripts/install.py dev" in done.stdout and "--check" in done.stdout
    for args in (["--bogus"], ["dev", "serve"]):
        done = subprocess.run([str(python), str(script), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stdout == "", done.stdout
        assert "usage:" in done.stderr and f"got {' '.join(args)}" in done.stderr and "Python" not in done.stderr


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_venv_without_pip_gets_one_from_ensurepip_and_keeps_what_it_holds(tmp_path: Path) -> None:
    """A venv whose creation was cut short, or one `uv venv` made (a python, no pip): make recreated it with --clear,
    deleting a torch installed into it by hand; ensurepip now gives it a pip and everything in it stays."""
    python = venv_without_pip(tmp_path / "venv")
    held = site_packages(tmp_path / "venv") / "torch-2.13.0+cu128.dist-info"
    held.mkdir()
    (held / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0+cu128\n")
    done = subprocess.run([str(python), str(ROOT / "scripts" / "install.py"), "--check"], capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0 and done.stdout == "", done.stderr
    assert f"{tmp_path / 'venv'} had no pip: ensurepip installed it" in done.stderr
    assert subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True).returncode == 0
    assert held.is_dir()


@pytest.mark.parametrize("holds", [False, True])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_venv_ensurepip_cannot_mend_is_created_again_only_when_it_holds_nothing(tmp_path: Path, holds: bool) -> None:
    """Without pip and without ensurepip (a Python built without it), an empty venv is for make to create again (exit
    1); one holding packages is left, and the check says what it holds and how to create it again by hand (exit 2)."""
    python = venv_without_pip(tmp_path / "venv")
    if holds:
        held = site_packages(tmp_path / "venv") / "torch-2.13.0+cu128.dist-info"
        held.mkdir()
        (held / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0+cu128\n")
    no_ensurepip = tmp_path / "no_ensurepip" / "ensurepip"  # on PYTHONPATH, before the standard library's
    no_ensurepip.mkdir(parents=True)
    (no_ensurepip / "__init__.py").write_text("")
    (no_ensurepip / "__main__.py").write_text("raise SystemExit('No module named ensurepip')\n")
    env = {**os.environ, "PYTHONPATH": str(no_ensurepip.parent)}
    for args in (["--check"], ["dev"]):
        done = subprocess.run([str(python), str(ROOT / "scripts" / "install.py"), *args], capture_output=True,
                              text=True, timeout=60, env=env)
        assert done.stdout == "" and "uv" not in done.stderr, done.stderr
        assert f"{tmp_path / 'venv'} has no working pip" in done.stderr and "ensurepip could not" in done.stderr
        if args == ["--check"]:
            assert done.returncode == (2 if holds else 1), done.stderr
            assert ("it holds torch, so make leaves it" in done.stderr) == holds, done.stderr
        else:
            assert done.returncode == 1
    assert not holds or held.is_dir()


def site_packages(venv: Path) -> Path:
    """The venv's site-packages folder."""
    return next((venv / "lib").glob("python3*/site-packages"))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_venv_running_the_tests_passes_the_check() -> None:
    assert install.venv_problem() is None
