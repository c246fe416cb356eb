"""Install torch's CPU build, pinned, then bbuvl with its extras, into the venv whose Python runs this script.

    .venv/bin/python scripts/install.py dev
    .venv/bin/python scripts/install.py --check     (exit 1, saying why, where make must create the venv again;
                                                     exit 2 where it is unfit but holds packages make must not delete)

The venv is checked first: its Python against pyproject.toml's requires-python, and that it has pip (a venv whose
creation was interrupted has a python and no pip). uv installs the same pinned set in under half pip's time on a
2-core machine, where pip unpacks and byte-compiles one package after another (docs/design.md, "Installing"); `make
demo` counts that time against its budget. uv is itself installed from the package index. It does not read pip's
configuration, so this script hands it the settings pip would use (wheel folders, indexes, no-index, constraints,
certificate), read with `pip config list`; where pip has a setting that is not handed on, pip installs. Where uv
cannot be installed, or fails to run, pip does the whole install; where uv's resolver finds the request impossible,
the install stops there, as pip's would. BBUVL_INSTALLER=pip skips uv.

torch is constraints.txt's version in its CPU build (`+cpu`): from pip's own sources (this machine's wheel folder),
else from PyTorch's CPU index; where neither has it, the install stops, saying so, rather than take PyPI's Linux
torch, the CUDA build (with nvidia-* and cuda-* wheels). A torch the venv already imports is kept.
Standard library only, and Python 3.7 syntax: it runs before anything else is installed, with whatever Python made
the venv, so that an old one is told so.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# pip's setting -> uv's option; each may hold several whitespace-separated values
PIP_TO_UV = {
    "find-links": "--find-links",
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "constraint": "--constraint",
}
# pip's yes/no setting -> uv's flag, passed when pip's value says yes
PIP_FLAGS_TO_UV = {"no-index": "--no-index"}
# pip's setting -> the environment variable uv reads it from
PIP_TO_ENV = {"cert": "SSL_CERT_FILE"}
# pip's settings that change how pip waits, retries and prints, never what it installs or from where: not handed on
PIP_ONLY = {"default-timeout", "timeout", "retries", "disable-pip-version-check", "progress-bar", "quiet", "verbose",
            "no-color", "no-input", "cache-dir", "no-cache-dir", "root-user-action", "log", "log-file", "exists-action",
            "require-virtualenv", "no-warn-script-location", "no-warn-conflicts", "no-python-version-warning"}
YES = {"y", "yes", "t", "true", "on", "1"}  # pip's spellings of yes (its strtobool)
# uv's exit status when its resolver found no set of packages that meets the request (uv 0.13: "No solution found");
# its own failures (an index it cannot reach, an error of uv itself) exit 2
UV_UNSATISFIABLE = 1
PIP_INSTALL = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install"]


class Refusal(Exception):
    """An install no installer can do here: main prints it as one error and exits 1."""


def pip_settings() -> dict[str, list[str]]:
    """pip's effective settings, from its files and PIP_* variables: each key's values, as whitespace-separated."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    # "global.find-links='/opt/wheels'", "install.cert=...", ":env:.find-links=..." (PIP_FIND_LINKS): as in pip, the
    # environment wins over the [install] section, which wins over [global]; other sections are other commands'
    rank = {":env:": 2, "install": 1, "global": 0}
    found: dict[str, tuple[int, list[str]]] = {}
    for line in listed.splitlines():
        match = re.fullmatch(r"(?P<section>[^.]*)\.(?P<key>[\w-]+)='(?P<value>.*)'", line.strip())
        if not match or match["section"] not in rank or match["key"] == "config-file":  # the files listed here
            continue
        if match["key"] not in found or rank[match["section"]] >= found[match["key"]][0]:
            # pip prints each value as a Python literal: a multi-line list comes as '\\nvalue\\nvalue'
            found[match["key"]] = (rank[match["section"]], ast.literal_eval(f"'{match['value']}'").split())
    return {key: values for key, (_, values) in found.items()}


def uv_options(settings: dict[str, list[str]]) -> tuple[list[str], dict[str, str], list[str]]:
    """pip's settings as uv's options and environment, and the settings neither carries (pip must install then)."""
    options = [f"{PIP_TO_UV[key]}={value}" for key in PIP_TO_UV for value in settings.get(key, [])]
    options += [flag for key, flag in PIP_FLAGS_TO_UV.items() if yes(settings.get(key))]
    env = {PIP_TO_ENV[key]: values[0] for key, values in settings.items() if key in PIP_TO_ENV and values}
    known = {*PIP_TO_UV, *PIP_FLAGS_TO_UV, *PIP_TO_ENV, *PIP_ONLY}
    return options, env, sorted(key for key in settings if key not in known)


def yes(values: list[str] | None) -> bool:
    """Whether a yes/no setting of pip's says yes (its last value, as pip reads a repeated one)."""
    return bool(values) and values[-1].lower() in YES


def required_python() -> tuple[int, ...]:
    """The oldest Python pyproject.toml's requires-python (a `>=X.Y` bound) allows."""
    match = re.search(r'^requires-python\s*=\s*">=\s*(\d+(?:\.\d+)*)"', PYPROJECT.read_text(), re.MULTILINE)
    if not match:
        raise Refusal(f'{PYPROJECT}: no requires-python = ">=X.Y" line, which this script reads')
    return tuple(int(part) for part in match[1].split("."))


def venv_problem() -> tuple[str, str] | None:
    """What makes the venv running this script unfit (a Python too old, no working pip) and what to do; None if fit."""
    need, have = required_python(), sys.version_info[:3]
    if have < need:
        python = f"python{'.'.join(map(str, need[:2]))}"
        return (f"{sys.executable} is Python {'.'.join(map(str, have))}, and bbu-vl needs Python >= "
                f"{'.'.join(map(str, need))} (requires-python in {PYPROJECT.name})",
                f"run make with a newer Python named, e.g. `PYTHON={python} make install` (make then creates "
                f"{sys.prefix} again with it; by hand: {python} -m venv --clear {sys.prefix})")
    pip = pip_version()
    if pip.returncode != 0:
        # A venv cut short before its pip (Ctrl-C during `python -m venv`), or one made without pip (`uv venv`): the
        # standard library's ensurepip gives it one, and keeps what the venv holds (a torch installed by hand).
        mended = subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], capture_output=True, text=True,
                                check=False)
        if mended.returncode == 0 and pip_version().returncode == 0:
            say(f"{sys.prefix} had no pip: ensurepip installed it")
            return None
        why = (pip.stderr.strip().splitlines() or [f"exit status {pip.returncode}"])[-1]
        return (f"{sys.prefix} has no working pip ({why}), and ensurepip could not give it one",
                f"create it again: {getattr(sys, '_base_executable', sys.executable)} -m venv --clear {sys.prefix} "
                "(this removes what it holds)")
    return None


def pip_version() -> subprocess.CompletedProcess:
    """`pip --version` in the venv running this script."""
    return subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False)


def holds_packages() -> list[str]:
    """The packages this venv holds besides the installers a new venv comes with (what `venv --clear` would delete)."""
    from importlib.metadata import distributions
    if sys.prefix == sys.base_prefix:
        return []
    installers = {"pip", "setuptools", "wheel"}
    return sorted({d.metadata["Name"] for d in distributions()
                   if d.metadata["Name"] and d.metadata["Name"].lower() not in installers
                   and str(d.locate_file("")).startswith(sys.prefix)})


def torch_pin() -> str:
    """The `torch==X` line of constraints.txt."""
    pins = [line.strip() for line in CONSTRAINTS.read_text().splitlines() if line.strip().startswith("torch==")]
    if not pins:
        sys.exit(f"{CONSTRAINTS}: no torch== line; torch must stay pinned (see the file's first comment)")
    return pins[0]


def cpu_torch(platform: str = sys.platform) -> str:
    """constraints.txt's torch as its CPU build: `+cpu` on Linux, where PyPI's torch is the CUDA build (and pulls
    nvidia-* wheels); elsewhere PyPI's torch is the CPU build, and has no `+cpu` version."""
    pin = torch_pin()
    return f"{pin}+cpu" if platform.startswith("linux") and "+" not in pin else pin


def package(extras: str) -> str:
    """This checkout, with its extras, as an installable requirement."""
    return f"{ROOT}[{extras}]" if extras else str(ROOT)


def has_torch() -> bool:
    """Whether the venv already imports torch (a build installed by hand is kept, as `make` always did)."""
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, check=False).returncode == 0


def run(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run a command, echoed, and return its exit status (127 when it cannot be started)."""
    print("+", shlex.join(command), flush=True)
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except OSError as e:
        say(f"{command[0]}: {e}")
        return 127


def install_torch(install: list[str], env: dict[str, str] | None, no_index: bool,
                  not_found: Callable[[int], bool]) -> int:
    """torch's CPU build from pip's own sources, else from PyTorch's CPU index; the first try's status where it says
    the installer itself failed (`not_found` false), not the search. Refusal when no source has the build."""
    build = cpu_torch()
    status = run([*install, build], env)
    if status == 0 or not not_found(status):
        return status
    # The CPU index for this one install only, after pip's own sources: where it cannot be reached (this machine) the
    # first try has found the wheel folder's build already, and the index is never asked
    if not no_index and run([*install, "--extra-index-url", CPU_INDEX, build], env) == 0:
        return 0
    where = "pip's sources (no-index is set)" if no_index else f"pip's sources, nor at {CPU_INDEX}"
    raise Refusal(
        f"torch's CPU build {build} for Python {sys.version_info[0]}.{sys.version_info[1]} is in none of {where} "
        f"(above); make installs no other torch, PyPI's Linux torch being the CUDA build, with its nvidia-* wheels. "
        f"Put the build's wheel in a find-links folder, or install a torch into {sys.prefix} first (one it imports "
        f"is kept), then run make again")


def with_pip(extras: str, keep_torch: bool) -> int:
    """Torch first (unless kept), then the package: pip reads its own configuration."""
    no_index = yes(pip_settings().get("no-index"))
    status = 0 if keep_torch else install_torch(PIP_INSTALL, None, no_index, not_found=lambda status: True)
    return status or run([*PIP_INSTALL, "-c", str(CONSTRAINTS), "-e", package(extras)])


def install_uv() -> Path | None:
    """uv, installed into the venv by pip; None when pip could not install it."""
    return None if run([*PIP_INSTALL, "uv"]) else Path(sys.executable).parent / "uv"


def with_uv(uv: Path, extras: str, keep_torch: bool, settings: dict[str, list[str]]) -> int:
    """The same two installs through uv, with pip's settings passed on: 0, or uv's status where uv itself failed.
    Refusal where uv's resolver found the request impossible: pip would find no way either."""
    options, uv_env, _ = uv_options(settings)
    env = dict(os.environ)
    for name, value in uv_env.items():
        env.setdefault(name, value)
    # unsafe-best-match: the highest version on any index, as pip chooses; uv's default takes the first index's only
    uv_pip = [str(uv), "pip", "install", "--quiet", "--python", sys.executable, "--compile-bytecode",
              "--index-strategy", "unsafe-best-match", *options]
    status = 0 if keep_torch else install_torch(uv_pip, env, "--no-index" in options,
                                                not_found=lambda status: status == UV_UNSATISFIABLE)
    if status:
        return status
    status = run([*uv_pip, "--constraint", str(CONSTRAINTS), "--editable", package(extras)], env)
    if status == UV_UNSATISFIABLE:
        raise Refusal("uv found no set of packages that meets the request (its reasons above); pip would find none "
                      "either, so it does not try")
    return status


def say(message: str) -> None:
    """One line to stderr, at once: between the installers' own output."""
    print(message, file=sys.stderr, flush=True)


def install(extras: str) -> int:
    """uv, else pip; Refusal where neither can install."""
    problem = venv_problem()
    if problem is not None:
        raise Refusal(": ".join(problem))
    keep_torch = has_torch()
    if os.environ.get("BBUVL_INSTALLER", "uv") == "pip":
        return with_pip(extras, keep_torch)
    settings = pip_settings()
    unpassed = uv_options(settings)[2]
    if unpassed:
        say(f"pip's settings {', '.join(unpassed)} have no counterpart handed to uv here: pip installs")
        return with_pip(extras, keep_torch)
    uv = install_uv()
    if uv is None:
        say("uv could not be installed (pip's reason above): pip installs instead")
        return with_pip(extras, keep_torch)
    status = with_uv(uv, extras, keep_torch, settings)
    if status:
        say(f"uv failed to run (exit status {status}, above): pip installs instead")
        return with_pip(extras, has_torch())  # a torch uv installed before it failed is kept
    return 0


def main(argv: list[str]) -> int:
    """`--check`: 0 fit, 1 make must create the venv again, 2 unfit but holding packages (each saying why); `--help`:
    this file's docstring; else install, with the extras named (one word, no option: 2, nothing installed)."""
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if len(argv) > 1 or any(a.startswith("-") and a != "--check" for a in argv):
        # `--help` was read as the extras to install: uv got `.[--help]` to parse, then pip.
        say(f"error: usage: {sys.argv[0]} [--check | --help | EXTRAS], e.g. dev; got {' '.join(argv)}")
        return 2
    try:
        if argv[:1] == ["--check"]:
            problem = venv_problem()
            if problem is None:
                return 0
            kept = holds_packages() if sys.version_info[:3] >= required_python() else []
            if kept:  # never delete what someone installed into it (a CUDA torch): say what to do instead
                say(f"error: {problem[0]}; it holds {', '.join(kept[:5])}{' ...' if len(kept) > 5 else ''}, "
                    f"so make leaves it: {problem[1]}")
                return 2
            say(f"{problem[0]}: make creates {sys.prefix} again")
            return 1
        return install(argv[0] if argv else "")
    except Refusal as e:
        say(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
