"""A program that switched Pillow's decompression-bomb check off (Image.MAX_IMAGE_PIXELS = None, Pillow's documented
way) before using bbu-vl as a library: the bounds bbu-vl keeps on what it writes still hold, with Pillow's default."""

from __future__ import annotations

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app as cli
from bbuvl.data.coords import PILLOW_DEFAULT_PIXELS, CoordinateContract, pixel_bound
from bbuvl.data.tiling import TileSpec, too_large


@pytest.fixture
def check_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)


def test_the_bound_is_pillows_default_with_the_check_off(check_off: None) -> None:
    assert pixel_bound() == PILLOW_DEFAULT_PIXELS == int(1024 * 1024 * 1024 // 4 // 3)
    # Before: TypeError '>' not supported between 'int' and 'NoneType' in every contract built
    assert CoordinateContract(3136, 1003520).max_pixels == 1003520
    with pytest.raises(ValueError, match="would enlarge every photo past the 89478485"):
        CoordinateContract(10**8, 10**9)


def test_tiling_and_synth_keep_their_bound_with_the_check_off(check_off: None, tmp_path) -> None:
    assert too_large((448, 336), TileSpec(grid=(2, 2), zoom=2.0)) is None
    assert "past the 89478485 pixels" in too_large((40000, 30000), TileSpec(grid=(2, 2), zoom=2.0))
    r = CliRunner().invoke(cli, ["data", "synth", str(tmp_path / "d"), "--size", "12000x9000", "--n-train", "1"])
    assert r.exit_code != 0 and "more than the 89,478,485 a photo may hold" in r.output, r.output
