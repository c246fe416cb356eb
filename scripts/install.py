"""Install torch, pinned, then bbuvl with its extras, into the venv whose Python runs this script.

    .venv/bin/python scripts/install.py dev

uv installs the same pinned set in under half pip's time on a 2-core machine, where pip unpacks and byte-compiles
one package after another (docs/design.md, "Installing"); `make demo` counts that time against its budget. uv is
itself installed from the package index. It does not read pip's configuration, so this script hands it the
settings pip would use (wheel folders, indexes, constraints, certificate), read with `pip config list`. Where uv
cannot be installed, or fails, pip does the whole install, as before. BBUVL_INSTALLER=pip skips uv.
Standard library only: it runs before anything else is installed.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
# pip's setting -> uv's option; each may hold several whitespace-separated values
PIP_TO_UV = {
    "find-links": "--find-links",
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "constraint": "--constraint",
}
PIP_INSTALL = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install"]


def pip_settings() -> dict[str, list[str]]:
    """pip's effective find-links, indexes, constraints and certificate, from its files and PIP_* variables."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    # "global.find-links='/opt/wheels'", "install.cert=...", ":env:.find-links=..." (PIP_FIND_LINKS): as in pip, the
    # environment wins over the [install] section, which wins over [global]
    rank = {":env:": 2, "install": 1, "global": 0}
    found: dict[str, tuple[int, list[str]]] = {}
    for line in listed.splitlines():
        match = re.fullmatch(r"(?P<section>[^.]*)\.(?P<key>[\w-]+)='(?P<value>.*)'", line.strip())
        if not match or match["key"] not in (*PIP_TO_UV, "cert") or match["section"] not in rank:
            continue
        if match["key"] not in found or rank[match["section"]] >= found[match["key"]][0]:
            # pip prints each value as a Python literal: a multi-line list comes as '\\nvalue\\nvalue'
            found[match["key"]] = (rank[match["section"]], ast.literal_eval(f"'{match['value']}'").split())
    return {key: values for key, (_, values) in found.items()}


def torch_pin() -> str:
    """The `torch==X` line of constraints.txt."""
    pins = [line.strip() for line in CONSTRAINTS.read_text().splitlines() if line.strip().startswith("torch==")]
    if not pins:
        sys.exit(f"{CONSTRAINTS}: no torch== line; torch must stay pinned (see the file's first comment)")
    return pins[0]


def package(extras: str) -> str:
    """This checkout, with its extras, as an installable requirement."""
    return f"{ROOT}[{extras}]" if extras else str(ROOT)


def has_torch() -> bool:
    """Whether the venv already imports torch (a build installed by hand is kept, as `make` always did)."""
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, check=False).returncode == 0


def run(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run a command, echoed, and return its exit status."""
    print("+", shlex.join(command), flush=True)
    return subprocess.run(command, env=env, check=False).returncode


def with_pip(extras: str, keep_torch: bool) -> int:
    """Torch first (unless kept), then the package: pip reads its own configuration."""
    status = 0 if keep_torch else run([*PIP_INSTALL, torch_pin()])
    return status or run([*PIP_INSTALL, "-c", str(CONSTRAINTS), "-e", package(extras)])


def with_uv(extras: str, keep_torch: bool) -> int:
    """The same two installs through uv, with pip's settings passed on; non-zero when uv is missing or fails."""
    if run([*PIP_INSTALL, "uv"]):
        return 1
    uv = Path(sys.executable).parent / "uv"
    settings = pip_settings()
    options = [f"{PIP_TO_UV[key]}={value}" for key in PIP_TO_UV for value in settings.get(key, [])]
    env = dict(os.environ)
    if settings.get("cert"):  # pip's certificate bundle: uv reads SSL_CERT_FILE
        env.setdefault("SSL_CERT_FILE", settings["cert"][0])
    # unsafe-best-match: the highest version on any index, as pip chooses; uv's default takes the first index's only
    uv_pip = [str(uv), "pip", "install", "--quiet", "--python", sys.executable, "--compile-bytecode",
              "--index-strategy", "unsafe-best-match", *options]
    status = 0 if keep_torch else run([*uv_pip, torch_pin()], env)
    return status or run([*uv_pip, "--constraint", str(CONSTRAINTS), "--editable", package(extras)], env)


def main() -> int:
    """uv, else pip."""
    extras = sys.argv[1] if len(sys.argv) > 1 else ""
    keep_torch = has_torch()
    if os.environ.get("BBUVL_INSTALLER", "uv") == "pip":
        return with_pip(extras, keep_torch)
    if with_uv(extras, keep_torch) == 0:
        return 0
    print("uv could not install the environment; pip does it instead", file=sys.stderr, flush=True)
    return with_pip(extras, keep_torch)


if __name__ == "__main__":
    sys.exit(main())
