"""An output name is checked, before any work, against the longest name written beside it: its temporary
(`.NAME.PID.XXXXXXXX.tmp.EXT`, bbuvl/atomic.py), 20 to 30 bytes longer than the name itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.atomic import temporary_name_bytes
from bbuvl.cli import app


def invoke(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


def longest_name(folder: Path, suffix: str) -> str:
    """The longest name ending in `suffix` whose temporary still fits in `folder`'s file system."""
    limit = os.pathconf(folder, "PC_NAME_MAX")
    room = limit - (temporary_name_bytes(folder / ("x" + suffix)) - 1 - len(suffix))
    return "x" * (room - len(suffix)) + suffix


@pytest.mark.parametrize("command, suffix", [
    (["data", "teachers", "{data}", "{out}"], ".jsonl"),
    (["data", "stats", "{data}", "--json", "{out}"], ".json"),
    (["data", "export-coco", "{data}", "{out}"], ".json"),
])
def test_a_name_whose_temporary_does_not_fit_is_refused_before_any_work_and_the_longest_that_fits_is_written(
        small_dataset, tmp_path, command, suffix):
    data = small_dataset / "train.jsonl"
    fits = longest_name(tmp_path, suffix)
    too_long = tmp_path / ("y" + fits)  # its own name and its lock file fit; its temporary is one byte too long
    # It was taken, the work done, and then the write failed: "error: [Errno 36] yyy...: writing failed (File name
    # too long); nothing was written"
    r = invoke([a.format(data=data, out=too_long) for a in command])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "Traceback" not in text and "[Errno" not in text
    assert f"{too_long}: a name of {len(too_long.name)} bytes" in text and f"at most {len(fits)} bytes" in text, text
    assert "wrote" not in text and "labels covered" not in text and "images," not in text  # refused before the work
    assert not os.path.lexists(too_long) and not list(tmp_path.iterdir())

    r = invoke([a.format(data=data, out=tmp_path / fits) for a in command])
    assert r.exit_code == 0, r.output
    assert (tmp_path / fits).stat().st_size > 0
