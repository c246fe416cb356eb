"""`bbuvl data synth` refuses what it could not render, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
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


@pytest.mark.parametrize("typed, needs", [
    (["--format", "vendor", "--teachers", "3"], "--teachers applies only with --format jsonl"),
    (["--part-fault-rate", "0.5"], "--part-fault-rate applies only with --fault-rate"),
    (["--tile-grid", "2x2"], "--tile-grid applies only with --tile-share"),
    (["--wide-share", "0.5"], "--wide-share applies only with --framing mixed"),  # its default value, typed
])
def test_an_option_typed_where_it_does_nothing_is_refused_before_rendering(tmp_path: Path, typed, needs):
    # Each rendered the photos exit 0 as if it had been used: a vendor export with no teacher pool, fault odds of
    # parts that --fault-rate never drew, a grid no tile was cut on.
    app = command_group()
    app.command("synth")(synth)
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "out"), "--n-train", "1", "--n-val", "0", *typed],
                                env={"COLUMNS": "400"})
    assert result.exit_code == 2 and needs in " ".join(result.output.split()), result.output
    assert not (tmp_path / "out").exists()


def test_the_same_options_where_they_apply_render(tmp_path: Path):
    app = command_group()
    app.command("synth")(synth)
    for n, typed in enumerate((["--fault-rate", "0.3", "--part-fault-rate", "0.5"],
                               ["--framing", "mixed", "--wide-share", "0.5", "--tile-share", "0.2", "--tile-grid", "2x2"])):
        result = CliRunner().invoke(app, ["synth", str(tmp_path / str(n)), "--n-train", "1", "--n-val", "0", "--size",
                                          "160x120", *typed])
        assert result.exit_code == 0, result.output
        assert (tmp_path / str(n) / "train.jsonl").stat().st_size > 0
