"""A JPEG past Pillow's decompression-bomb limit (a phone's 200 MP mode) is read at a reduced scale, not refused: its
size is still the stored photo's, and a region of it is the full decode's region. Any other format past the limit, and
a JPEG past it even at 1/8, is refused naming the file. The limit is lowered with Pillow's own constant, so that a
2000x1500 photo counts as one past it (docs/serving.md, "Photos past Pillow's pixel limit")."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from bbuvl.data.images import ImageError, image_size, load_image, open_image

EXIF_ORIENTATION = 0x0112
# Pillow refuses past twice this: 2,000,000 pixels, so a 2000x1500 photo (3.0 M) is past it and its half (0.75 M) not
LOWERED = 1_000_000


def photo(path, size=(2000, 1500), orientation: int = 1, fmt: str = "JPEG"):  # noqa: ANN001, ANN201
    """A noisy gradient, a red top half showing which way it was turned."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    pixels = np.stack([x * 255 // size[0], y * 255 // size[1], (x + y) % 256], axis=-1) + rng.integers(-20, 20, (*x.shape, 3))
    pixels[: size[1] // 2, :, 0] = 230
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(path, fmt, quality=90, exif=exif)
    return path


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_jpeg_past_the_limit_is_decoded_at_half_its_size_and_keeps_its_stored_size(tmp_path, monkeypatch, orientation):
    path = photo(tmp_path / "phone.jpg", orientation=orientation)
    full = load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    big = load_image(path)
    upright = (1500, 2000) if orientation == 6 else (2000, 1500)
    assert (big.raw_size, big.orientation, big.size, full.size) == ((2000, 1500), orientation, upright, upright)
    assert big.image.size == (upright[0] // 2, upright[1] // 2)  # the largest scale under the limit
    assert image_size(path) == (2000, 1500)  # the header is read, not refused
    a = np.asarray(full.image.resize(big.image.size, Image.BILINEAR), dtype=float)
    assert np.abs(a - np.asarray(big.image, dtype=float)).mean() < 4  # the same picture, turned the same way


def test_a_region_of_a_reduced_decode_is_the_full_decodes_region_in_stored_pixels(tmp_path, monkeypatch):
    path = photo(tmp_path / "phone.jpg")
    full = load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    big = load_image(path)
    region, to = (1210, 300, 1610, 600), (200, 150)
    assert big.region(region, to).size == full.region(region, to).size == to
    a, b = (np.asarray(x.region(region, to), dtype=float) for x in (full, big))
    assert np.abs(a - b).mean() < 6
    # a region cut from the wrong frame (the decode's own pixels) lies 600 px away, another picture
    assert np.abs(a - np.asarray(full.region((605, 150, 805, 300), to), dtype=float)).mean() > 3 * np.abs(a - b).mean()


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_another_format_past_the_limit_is_still_refused_naming_the_file(tmp_path, monkeypatch, fmt):
    path = tmp_path / f"phone.{fmt.lower()}"
    Image.new("RGB", (1500, 1400), (90, 120, 150)).save(path, fmt)  # 2.1 M pixels: Pillow refuses it at the header
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    with pytest.raises(ImageError, match=rf"phone\.{fmt.lower()}: image too large to decode safely .* save it at a lower "
                                         "resolution first, or as a JPEG"):
        load_image(path)


def test_a_jpeg_past_the_limit_even_at_an_eighth_is_refused_naming_the_file(tmp_path, monkeypatch):
    path = photo(tmp_path / "phone.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 250x188 at 1/8 is 47,000 pixels, past 40,000
    with pytest.raises(ImageError, match=r"phone\.jpg: image too large to decode safely \(2000x1500 pixels; even decoded "
                                         r"at 1/8 of its size, 250x188 = 47000 pixels are past the limit of 40000\)"):
        load_image(path)


def test_a_picture_of_a_jpeg_past_the_limit_is_decoded_no_larger_than_the_limit_allows(tmp_path, monkeypatch):
    path = photo(tmp_path / "phone.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    assert load_image(path, at_least=(1800, 1300)).image.size == (1000, 750)  # asked more than the limit allows
    small = load_image(path, at_least=(400, 300))
    assert (small.image.size, small.size) == ((500, 375), (2000, 1500))  # as small as the picture allows


def test_the_limit_is_pillows_own_and_left_as_it_is_for_other_threads(tmp_path, monkeypatch):
    path = photo(tmp_path / "phone.jpg")
    png = tmp_path / "phone.png"
    Image.new("RGB", (1500, 1400), (90, 120, 150)).save(png)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    refused: list[str] = []

    def other_thread() -> None:  # the server decodes on threads: Pillow's check still holds for them meanwhile
        for _ in range(20):
            try:
                with Image.open(png):
                    pass
            except Image.DecompressionBombError as e:
                refused.append(str(e))

    t = threading.Thread(target=other_thread)
    t.start()
    for _ in range(20):
        with open_image(path) as im:
            assert im.size == (1000, 750)
    t.join()
    assert len(refused) == 20 and Image.MAX_IMAGE_PIXELS == LOWERED
