"""A photo turned upright says no turn is left. Pillow copies an image's EXIF and XMP to what is made from it, so the
upright pixels `load_image` and a server give still said "turn 90 degrees": an image given in memory, which is now
turned by its EXIF as its file is (`oriented`, infer/predictor.py `Predictor.prepare`), would have been turned twice."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bbuvl.data.images import EXIF_ORIENTATION, exif_orientation, load_image, oriented

# How each orientation's photo is stored: the upright photo turned back, as a camera writes it.
STORED = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("orientation", sorted(STORED))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_an_image_in_memory_is_turned_as_its_file_and_once(tmp_path, fmt, orientation):
    rng = np.random.default_rng(orientation)
    upright = Image.fromarray(rng.integers(0, 255, (40, 64, 3), dtype=np.uint8))  # 64 wide, 40 high
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path = tmp_path / f"turned.{fmt.lower()}"
    stored = upright.transpose(STORED[orientation])
    stored.save(path, fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {}))
    loaded = load_image(path)
    with Image.open(path) as im:
        if fmt != "TIFF":  # this Pillow turns a TIFF itself (data/images.py pillow_turns_tiff)
            assert im.size == stored.size and exif_orientation(im) == orientation
        turned, said = oriented(im)
        assert said == loaded.orientation if fmt != "TIFF" else said == 1
        assert turned.size == loaded.image.size == (64, 40)
        assert np.array_equal(np.asarray(turned.convert("RGB")), np.asarray(loaded.image))
    for made in (loaded.image, turned, loaded.image.crop((0, 0, 30, 20)), loaded.image.resize((32, 20))):
        assert exif_orientation(made) == 1
        again, said = oriented(made)
        assert again is made and said == 1
