"""A photo decoded for a picture people look at (reports, viz) is decoded at a reduced scale when it is a JPEG far
larger than the picture: upright as in full, never smaller than asked, and a truncated file still named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bbuvl.data.images import ImageError, load_image

EXIF_ORIENTATION = 0x0112


def photo(path, size=(2000, 1500), orientation: int = 1):  # noqa: ANN001, ANN201
    rng = np.random.default_rng(0)
    pixels = (rng.random((size[1], size[0], 3)) * 255).astype("uint8")
    pixels[: size[1] // 2] = (200, 40, 40)  # a red top half: where it lands shows which way the photo was turned
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, quality=90, exif=exif)
    return path


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_large_jpeg_is_decoded_small_but_never_under_the_size_asked_and_upright(tmp_path, orientation):
    path = photo(tmp_path / "p.jpg", orientation=orientation)
    full = load_image(path).image
    asked = (full.size[0] // 3, full.size[1] // 3)
    small = load_image(path, at_least=asked)
    assert small.raw_size == (2000, 1500) and small.orientation == orientation
    assert asked[0] <= small.image.size[0] < full.size[0] and asked[1] <= small.image.size[1] < full.size[1]
    assert small.image.size[0] / small.image.size[1] == pytest.approx(full.size[0] / full.size[1], rel=0.01)
    a = np.asarray(full.resize(asked, Image.BILINEAR), dtype=float)
    b = np.asarray(small.image.resize(asked, Image.BILINEAR), dtype=float)
    assert np.abs(a - b).mean() < 8  # the same picture, turned the same way


def test_a_png_or_a_small_jpeg_is_decoded_as_it_is(tmp_path):
    png = tmp_path / "p.png"
    Image.new("RGB", (400, 300), (1, 2, 3)).save(png)
    assert load_image(png, at_least=(100, 75)).image.size == (400, 300)
    jpg = photo(tmp_path / "s.jpg", size=(400, 300))
    assert load_image(jpg, at_least=(400, 300)).image.size == (400, 300)


def test_a_truncated_jpeg_decoded_small_is_named(tmp_path):
    path = photo(tmp_path / "cut.jpg")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageError, match="cut.jpg"):
        load_image(path, at_least=(200, 150))


def test_a_phones_mpo_is_decoded_small_as_a_jpeg_is(tmp_path):
    # An MPO (a JPEG with a depth map or preview inside, as phones write) was decoded in full for every picture
    path = tmp_path / "phone.jpg"
    big = Image.open(photo(tmp_path / "p.jpg"))
    big.save(path, "MPO", save_all=True, append_images=[big.resize((200, 150))])
    small = load_image(path, at_least=(400, 300))
    assert Image.open(path).format == "MPO" and small.image.size == (500, 375) and small.size == (2000, 1500)
