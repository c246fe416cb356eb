"""A TIFF with an EXIF orientation is turned once. This Pillow turns a TIFF itself (its size reported upright from the
header on, its pixels turned as they decode), so every reader here takes it as upright: turned again, the header's
size disagreed with the decode's and a near copy of the same picture was found turned 90 degrees."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bbuvl.data.check import check_size, probe_image
from bbuvl.data.images import EXIF_ORIENTATION, load_image, upright_size
from bbuvl.data.near_copies import photo_print
from bbuvl.data.schema import ImageRecord, ObjectAnn


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_every_reader_sees_a_turned_tiff_at_one_upright_size_and_with_the_same_pixels(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    upright = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))  # 80 wide, 60 high
    upright.save(tmp_path / "up.png")
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    upright.transpose(undo).save(tmp_path / "t.tif", exif=exif.tobytes())  # stored on its side, EXIF to turn it back
    loaded = load_image(tmp_path / "t.tif")
    assert loaded.size == (80, 60) and np.array_equal(np.asarray(loaded.image), np.asarray(upright))
    assert upright_size(tmp_path / "t.tif") == (80, 60)
    assert probe_image(tmp_path / "t.tif", decode=False).upright == probe_image(tmp_path / "t.tif").upright == (80, 60)
    assert np.allclose(photo_print(tmp_path / "t.tif"), photo_print(tmp_path / "up.png"), atol=2)
    record = ImageRecord(images=["t.tif"], width=80, height=60, objects=[ObjectAnn(bbox_2d=[1, 1, 70, 50], desc="线缆")])
    for decode in (True, False):  # before: --no-decode called the upright record "EXIF-rotated ... in the raw frame"
        assert check_size(record, "t.tif", probe_image(tmp_path / "t.tif", decode=decode)) is None

