"""`bbuvl data synth` refuses what it could not render, before any work."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.common import command_group
from bbuvl.cli.data_synth import synth


def test_a_photo_size_past_what_any_reader_opens_is_refused_before_rendering(tmp_path: Path):
    app = command_group()
    app.command("synth")(synth)
    # Just past the bound; 100000x100000 took all the memory there was.
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "out"), "--size", "9460x9460", "--n-train", "1", "--n-val", "0"])
    assert result.exit_code == 2, result.output
    assert f"more than the {Image.MAX_IMAGE_PIXELS:,} a photo may hold" in result.output
    assert not (tmp_path / "out").exists()
