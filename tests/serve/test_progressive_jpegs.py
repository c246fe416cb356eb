"""A JPEG coded in several scans over real HTTP: the 280-byte progressive JPEG claiming 16000x16000 is a 413
`image_too_large` before a pixel is decoded (the server held 0.5 GB more and answered 200 with boxes in a grey photo
that does not exist), one whose data is far too little for the pixels it claims a 400, and a real progressive photo
is answered in its stored pixels (docs/serving.md, "Bad input")."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.forged_jpegs import PeakMemory, claiming
from tests.serve.client import multipart

JPEG = {"Content-Type": "image/jpeg"}
LIMIT = 100 * 50_176  # the test checkpoint's pixel limit: 100 x its contract's max_pixels


@pytest.fixture(scope="module")
def server(engine, keys):
    from bbuvl.serve.app import ServeSettings, create_app
    from tests.serve.conftest import running

    with running(create_app(engine, keys, ServeSettings())) as client:
        yield client


def progressive_photo(size: tuple[int, int]) -> bytes:
    """A real progressive JPEG of a noisy gradient (4:2:0, as cameras and web encoders write them)."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size[0])[None, :] + rng.integers(0, 40, (size[1], size[0]))
    buf = io.BytesIO()
    Image.fromarray(np.stack([ramp, ramp[::-1], ramp[:, ::-1]], axis=-1).astype(np.uint8)).save(
        buf, "JPEG", quality=90, progressive=True)
    return buf.getvalue()


@pytest.mark.parametrize("as_", ["raw", "multipart"])
def test_a_280_byte_progressive_jpeg_claiming_16000x16000_is_a_413_before_a_pixel_is_decoded(server, as_):
    bomb = claiming(16000)
    assert len(bomb) == 280
    body, ctype = (bomb, JPEG["Content-Type"]) if as_ == "raw" else multipart("image", "claims.jpg", bomb)
    peak = PeakMemory()
    r = server.request("POST", "/v1/detect", body, {"Content-Type": ctype})
    grew = peak.growth_mib()
    assert r.status == 413 and r.json()["error"]["kind"] == "image_too_large", r.body
    message = r.json()["error"]["message"]
    assert "16000x16000 pixels, a progressive JPEG" in message and f"at most {LIMIT}" in message, message
    assert "save it as a baseline JPEG" in message, message
    assert grew is None or grew < 64, grew  # 490 MiB of coefficients before
    assert server.request("POST", "/v1/detect", progressive_photo((320, 240)), JPEG).status == 200


def test_a_jpeg_claiming_far_more_pixels_than_its_bytes_hold_is_a_400_naming_it(server):
    r = server.request("POST", "/v1/detect", claiming(1500), JPEG)  # within the limit: 200 for a grey photo before
    assert r.status == 400 and r.json()["error"]["kind"] == "corrupt_image", r.body
    assert "a 1500x1500 JPEG holds at least" in r.json()["error"]["message"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_real_progressive_photo_whose_coefficients_pass_the_limit_is_answered_in_its_stored_pixels(server):
    # 4.32 M pixels and 1.62 M of coefficients: past the limit whole, decoded at half its size within it
    r = server.request("POST", "/v1/detect", progressive_photo((2400, 1800)), JPEG)
    assert r.status == 200, r.body
    assert (r.json()["width"], r.json()["height"]) == (2400, 1800)
