"""The whole photo's region, shrunk to a model frame, was cut first: a copy of every pixel (432 MB of a 12000x9000 photo)
made only to be resized, which a huge photo under a memory limit could not afford. It is now resized straight from the
photo, to the same pixels; a smaller region is still cut first, its edges bounding the filter as the tile `data tile`
writes bounds it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bbuvl.data.images import stored_region


def _noise(size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("box, to", [((0, 0, 1200, 900), (448, 336)), ((0, 0, 1200, 900), (2000, 1500)),
                                     ((0.2, 0, 1199.6, 900), (300, 225)), ((100, 50, 700, 500), (448, 336)),
                                     ((100, 50, 700, 500), (600, 450))])
def test_a_region_is_the_crop_of_the_photo_resized(box, to):
    photo = _noise((1200, 900))
    expected = photo.crop(tuple(round(v) for v in box))
    expected = expected if expected.size == to else expected.resize(to, Image.BICUBIC)
    assert np.array_equal(np.asarray(stored_region(photo, photo.size, box, to)), np.asarray(expected))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads and resets the peak in /proc/self (Linux)")
def test_the_whole_photo_is_shrunk_without_a_copy_of_it():
    photo = Image.new("RGB", (6000, 4500), (90, 120, 150))  # 108 MB: Pillow holds RGB in 4 bytes a pixel

    def status(key: str) -> int:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key + ":"))
        return int(line.split()[1]) * 1024

    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from what is resident now
    before = status("VmRSS")
    shrunk = stored_region(photo, photo.size, (0, 0, 6000, 4500), (448, 336))
    grown = status("VmHWM") - before
    assert shrunk.size == (448, 336)
    # The copy grew the peak by the photo's 108 MB; resized from it, by its first pass's 448x4500 rows (8 MB)
    assert grown < 27e6, f"{grown / 1e6:.0f} MB more at the peak"
