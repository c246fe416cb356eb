"""Photos whose pixels take more memory to read than an 8-bit photo's: a 16-bit or float image is rescaled to 8 bits
(data/images.py), up to 2.1 times an 8-bit photo's bytes a pixel at its peak (bench/decode_memory.py), so the pixel limit counts it by
that cost: a 300 KB 16-bit TIFF at the limit once held 3.7 GB for 8 s of a decoding thread, four at once 15 GB."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image


def tiff(side: int, dtype: type, channels: int = 0) -> bytes:
    """A side x side TIFF of zeros (deflated: a few KB whatever its size)."""
    data = io.BytesIO()
    shape = (side, side, channels) if channels else (side, side)
    Image.fromarray(np.zeros(shape, dtype)).save(data, "TIFF", compression="tiff_adobe_deflate")
    return data.getvalue()


@pytest.mark.parametrize(("dtype", "channels", "over", "under", "kind", "cost"),
                         [(np.uint16, 0, 1600, 1500, "16-bit", 2), (np.float32, 0, 1600, 1200, "float", 3),
                          (np.uint8, 4, 1400, 1000, "transparency", 3)])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_wide_image_is_limited_by_what_it_costs_to_read(serve, dtype, channels, over, under, kind, cost):
    client = serve()
    limit = 100 * 50_176  # the test checkpoint's pixel limit: 100 x its contract's max_pixels
    big = tiff(over, dtype, channels)  # under the limit in pixels, over it in what reading them costs
    assert len(big) < 50_000 and over * over < limit < over * over * cost
    r = client.request("POST", "/v1/detect", big, {"Content-Type": "image/tiff"})
    # 200 before, its reading costing as much as an 8-bit photo `cost` times its size
    assert r.status == 413 and r.json()["error"]["kind"] == "image_too_large", r.body
    message = r.json()["error"]["message"]
    assert f"{over}x{over}" in message and kind in message and str(limit // cost) in message, message
    assert client.request("POST", "/v1/detect", tiff(under, dtype, channels), {"Content-Type": "image/tiff"}).status == 200
    assert client.request("POST", "/v1/detect", tiff(over, np.uint8, 3), {"Content-Type": "image/tiff"}).status == 200
