"""Running bbuvl where file names are not UTF-8: a folder named in GBK bytes (an archive made on a Chinese Windows,
unpacked here), and locales whose file-name encoding is not UTF-8 (LC_ALL=C with PYTHONUTF8=0; zh_CN.GBK, built
with localedef into a test's own folder, as the machine has none installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# 数据 ("data") in GBK bytes: what Python reads from such a folder's name here, lone surrogates
GBK_DATA = os.fsdecode("数据".encode("gbk"))


def gbk_folder(parent: Path) -> Path:
    """A new folder `数据` in GBK bytes under `parent`."""
    folder = parent / GBK_DATA
    folder.mkdir(parents=True)
    return folder


def c_locale() -> dict[str, str]:
    """The environment of LC_ALL=C with Python's UTF-8 mode off: file names are ASCII."""
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "COLUMNS": "400"}
    env.pop("PYTHONIOENCODING", None)
    return env


def gbk_locale(folder: Path) -> dict[str, str]:
    """The environment of the zh_CN.GBK locale, built into `folder`; skips the test where localedef cannot build it."""
    if shutil.which("localedef") is None:
        pytest.skip("no localedef to build the zh_CN.GBK locale")
    folder.mkdir(parents=True, exist_ok=True)
    built = subprocess.run(["localedef", "-i", "zh_CN", "-f", "GBK", str(folder / "zh_CN.GBK")], capture_output=True,
                           timeout=120)
    if not (folder / "zh_CN.GBK").is_dir():
        pytest.skip(f"localedef could not build zh_CN.GBK: {built.stderr.decode(errors='replace')[:200]}")
    env = {**os.environ, "LOCPATH": str(folder), "LC_ALL": "zh_CN.GBK", "LANG": "zh_CN.GBK", "COLUMNS": "400"}
    for name in ("PYTHONUTF8", "PYTHONIOENCODING"):
        env.pop(name, None)
    return env


def bbuvl(env: dict[str, str], *args: str | Path, cwd: Path | None = None) -> tuple[int, str]:
    """Run `bbuvl ARGS` in `env`; its exit code and output, read as that locale writes it (GBK there, else ASCII with
    backslash escapes)."""
    done = subprocess.run([sys.executable, "-m", "bbuvl.cli", *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          timeout=300)
    encoding = "gbk" if env.get("LC_ALL", "").endswith("GBK") else "ascii"
    out = (done.stdout + done.stderr).decode(encoding, errors="replace")
    return done.returncode, " ".join(out.split())


def python(env: dict[str, str], code: str, cwd: Path | None = None) -> str:
    """What `python -c CODE` prints in `env` (its standard streams in UTF-8: the locale is for its file names)."""
    done = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONIOENCODING": "utf-8"}, cwd=cwd,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode("utf-8", errors="replace")
    return done.stdout.decode("utf-8").strip()
