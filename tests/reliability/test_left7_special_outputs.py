"""An output folder that is a device is named as one, not as 'a file'."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bbuvl.cli import app


def test_data_synth_into_dev_null_says_it_is_a_device(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["data", "synth", "/dev/null", "--n-train", "1", "--n-val", "1", "--size", "160x120"])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "/dev/null: cannot be made a folder: it is a device" in text, r.output
