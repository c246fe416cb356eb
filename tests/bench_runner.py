"""Run a bench script's command line inside the test process, where torch and bbuvl are already imported."""

from __future__ import annotations

import contextlib
import importlib
import io
import types
import runpy
import sys
from pathlib import Path

import torch


def run_bench_in_process(script: Path, args: list[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `python script *args`, without paying a new interpreter's imports."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, [str(script), *args]
    path = list(sys.path)
    sys.path.insert(0, str(script.parent))  # as `python script` does: a bench may import its siblings
    threads = torch.get_num_threads()  # a bench may set its own; the test process keeps the suite's
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        sys.argv = argv
        sys.path[:] = path
        torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue()


def bench_module(script_dir: Path, name: str) -> types.ModuleType:
    """A bench script imported as a module (bench scripts are no package: their folder is put on the path for the
    import alone)."""
    sys.path.insert(0, str(script_dir))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(script_dir))
