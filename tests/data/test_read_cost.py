"""What a photo costs to read, told from its header (data/read_cost.py): a JPEG coded in several scans is charged the
coefficients its decoder holds for its whole stored size at any scale, so a 280-byte progressive JPEG claiming
30000x30000 is refused naming the file before a pixel is decoded (it cost 1.7 GB and 3 s, decoded at 7500x7500), and
one whose bytes are far too few for the pixels it claims is refused as not the photo it says it is. Real photos are
read as before (docs/serving.md, "Bad input")."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bbuvl.data.check import check_dataset
from bbuvl.data.images import ImageError, image_size, load_image
from bbuvl.data.near_copies import photo_print, photo_prints
from bbuvl.data.read_cost import jpeg_layout, read_cost
from tests.forged_jpegs import ARITHMETIC_FLAT_2000, PeakMemory, claiming, flooded, rescanned, scanned_one_by_one
from tests.forged_pngs import chunk_flooded, rechunked

# Pillow refuses past twice this: 2,000,000 pixels (as tests/data/test_images_past_the_pixel_limit.py lowers it)
LOWERED = 1_000_000


def noisy(size: tuple[int, int], mode: str = "RGB", **save: object) -> bytes:
    """A JPEG of a noisy gradient, so its coefficients are a photo's, not a flat colour's."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size[0])[None, :] + rng.integers(0, 40, (size[1], size[0]))
    pixels = ramp if mode == "L" else np.stack([ramp, ramp[::-1], ramp[:, ::-1]], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def cost_of(data: bytes):  # noqa: ANN201
    with Image.open(io.BytesIO(data)) as im:
        return read_cost(im)


def test_a_280_byte_progressive_jpeg_claiming_30000x30000_is_refused_naming_the_file_before_decoding(tmp_path: Path):
    path = tmp_path / "tiny_claims_huge.jpg"
    path.write_bytes(claiming(30000))
    assert path.stat().st_size == 280
    peak, start = PeakMemory(), time.monotonic()
    with pytest.raises(ImageError, match=rf"{path.name}: image too large to decode safely \(30000x30000 pixels, a "
                                         r"progressive JPEG whose decoder holds the coefficients of all of them at any "
                                         r"scale \(1717 MiB, .*\): save it as a baseline JPEG"):
        load_image(path)  # decoded at 7500x7500 before, after 1,771 MiB and 3.3 s
    assert time.monotonic() - start < 1
    assert peak.growth_mib() is None or peak.growth_mib() < 50, peak.growth_mib()
    assert image_size(path) == (30000, 30000)  # its header is still read, as any photo's is


def test_data_check_names_it_at_its_line_and_checks_the_other_photos(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "bomb.jpg").write_bytes(claiming(30000))
    (tmp_path / "images" / "good.jpg").write_bytes(noisy((320, 240)))
    lines = [{"images": ["images/good.jpg"], "width": 320, "height": 240, "objects": []},
             {"images": ["images/bomb.jpg"], "width": 30000, "height": 30000, "objects": []}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    errors = [p for p in check_dataset(tmp_path) if p.severity == "error"]
    assert [(p.line, "image too large to decode safely" in p.message, "progressive JPEG" in p.message)
            for p in errors] == [(2, True, True)], errors


def test_near_copy_prints_refuse_it_as_loading_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # data split, data teachers, import-coco and data check print every photo on 8 threads: each print of a
    # 30000x30000 claim held 1.7 GB. Here a 4000x4000 claim, its 32 MB of coefficients past the lowered limit.
    bomb, good = tmp_path / "bomb.jpg", tmp_path / "good.jpg"
    bomb.write_bytes(claiming(4000))
    good.write_bytes(noisy((320, 240)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    with pytest.raises(ImageError, match=r"bomb\.jpg: image too large to decode safely \(4000x4000 pixels, a "
                                         r"progressive JPEG .*, past the limit of 2000000\)"):
        photo_print(bomb)
    printed = photo_prints([bomb, good], workers=1)
    assert printed[0] is None and printed[1] is not None


def test_a_jpeg_whose_components_are_scanned_one_by_one_is_charged_as_a_progressive_one(tmp_path: Path,
                                                                                         monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "sequential.jpg"
    path.write_bytes(scanned_one_by_one(4000))
    # 4:2:0: 250,000 blocks of its brightness, 62,500 of each colour, 128 bytes each: 6,000,000 pixels of 8 bytes
    assert cost_of(path.read_bytes()).held == 6_000_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    with pytest.raises(ImageError, match=r"sequential\.jpg: image too large to decode safely \(4000x4000 pixels, a JPEG "
                                         r"whose components are scanned one by one"):
        load_image(path)


def test_a_16_bit_photo_is_limited_by_what_it_costs_to_read_as_the_server_limits_it(tmp_path: Path,
                                                                                      monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "scan.png"
    Image.fromarray(np.zeros((1200, 1200), np.uint16)).save(path)  # 1.44 M pixels, read as 2.88 M of an 8-bit photo
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    with pytest.raises(ImageError, match=r"scan\.png: image too large to decode safely \(1200x1200 = 1440000 pixels of "
                                         r"16-bit \(I;16\), which take 2 times an 8-bit photo's memory to read: past the "
                                         r"limit of 1000000 pixels of it\): save it as an 8-bit JPEG or PNG first"):
        load_image(path)


@pytest.mark.parametrize(("mode", "subsampling", "share"), [("L", 0, 1 / 4), ("RGB", 2, 3 / 8), ("RGB", 0, 3 / 4)])
def test_a_progressive_jpeg_is_charged_two_bytes_a_sample_and_a_baseline_one_nothing_more(mode, subsampling, share):
    size = (640, 480)  # whole blocks and sampling units: the shares are exact
    progressive = cost_of(noisy(size, mode, progressive=True, subsampling=subsampling))
    baseline = cost_of(noisy(size, mode, subsampling=subsampling))
    assert progressive.held == size[0] * size[1] * share and progressive.held_by == "a progressive JPEG"
    assert (baseline.held, baseline.short, progressive.short) == (0, None, None)
    assert progressive.at(size) == size[0] * size[1] + progressive.held


def test_a_progressive_photo_past_the_limit_is_decoded_at_the_scale_its_coefficients_leave_room_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "phone.jpg"
    path.write_bytes(noisy((1600, 1200), progressive=True))  # 1.92 M pixels and 0.72 M of coefficients
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LOWERED)
    loaded = load_image(path)
    assert (loaded.size, loaded.image.size) == ((1600, 1200), (800, 600))  # whole before: 2.64 M past the 2 M limit


@pytest.mark.parametrize("progressive", [True, False])
def test_a_header_claiming_more_pixels_than_its_data_holds_is_refused_naming_the_file(tmp_path: Path, progressive):
    path = tmp_path / "forged.jpg"
    path.write_bytes(claiming(1500, progressive))  # within every limit: decoded as a grey photo that does not exist before
    with pytest.raises(ImageError, match=r"forged\.jpg: cannot decode image: the file holds \d+ bytes of image data, and "
                                         r"a 1500x1500 JPEG holds at least 4418 .*a header written over"):
        load_image(path)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_no_real_photo_is_too_few_bytes_for_its_size_not_even_one_of_a_single_colour(tmp_path: Path):
    for progressive in (False, True):
        for mode, colour in (("L", 128), ("RGB", (1, 2, 3))):
            buf = io.BytesIO()  # 2.0 bits a block, the least a JPEG coded with Huffman tables holds
            Image.new(mode, (6000, 4000), colour).save(buf, "JPEG", progressive=progressive, optimize=True)
            assert cost_of(buf.getvalue()).short is None
    path = tmp_path / "flat.jpg"  # coded arithmetically, 0.002 bits a block: never judged by its bytes
    path.write_bytes(ARITHMETIC_FLAT_2000)
    assert load_image(path).image.getextrema() == ((128, 128),) * 3


def test_the_layout_of_markers_that_lead_nowhere_is_none_and_bytes_between_segments_are_skipped():
    tiny = claiming(64, progressive=False)
    assert jpeg_layout(io.BytesIO(tiny)).frame == 0xC0
    # a segment whose length counts less than its own 2 bytes: read back, it would lead to itself for ever
    assert jpeg_layout(io.BytesIO(b"\xff\xd8\xff\xe0\x00\x00" + tiny[2:])) is None
    junk = tiny[:2] + b"\x00" * 200_000 + tiny[2:]  # bytes between segments are skipped, as libjpeg skips them
    layout = jpeg_layout(io.BytesIO(junk))
    assert (layout.frame, layout.first_scan) == (0xC0, 1)
    fp = io.BytesIO(tiny)
    fp.seek(7)
    jpeg_layout(fp)
    assert fp.tell() == 7  # left where Pillow left it


def test_a_jpeg_of_more_scans_than_any_encoder_writes_is_refused_naming_the_file_before_decoding(tmp_path: Path):
    # Its last scan repeated 1,000 times: 39 KB whose every scan is a pass of the decoder over the whole photo (0.9 s
    # here for 1000x800, 7.3 s for a 2236x2236 one; minutes for a few hundred KB), read to its end before
    path = tmp_path / "rescanned.jpg"
    path.write_bytes(rescanned((1000, 800), 1000))
    with pytest.raises(ImageError, match=r"rescanned\.jpg: not decoded: a JPEG of more than 100 scans"):
        load_image(path)
    # counted marker by marker: a comment holding the bytes of an end of image and a scan's start fools no count
    path.write_bytes(rescanned((1000, 800), 1000, comment=b"\xff\xd9\xff\xda"))
    with pytest.raises(ImageError, match="more than 100 scans"):
        load_image(path)
    # 100 scans, ten times libjpeg's, and what encoders write, are read
    path.write_bytes(rescanned((1000, 800), 90))
    assert load_image(path).size == (1000, 800)
    for data in (noisy((400, 300)), noisy((400, 300), progressive=True), noisy((400, 300), "L", progressive=True)):
        assert cost_of(data).slow is None


@pytest.mark.parametrize("where", ["before", "among"])
def test_a_jpeg_of_more_markers_than_any_photo_holds_is_refused_naming_the_file_unread(tmp_path: Path, where):
    # Each segment a step in Python however small: these 200,000 (0.8 MB) took Pillow's opener 0.3 s and the marker
    # walk 0.5 s, 10 MB of them 6 s and 16 s, before a pixel was decoded; among the scans, their count read 64 KB for
    # each. Refused after the first 1,000, before Pillow's opener steps through them.
    path = tmp_path / "flooded.jpg"
    path.write_bytes(flooded(200_000, where))
    with pytest.raises(ImageError, match=rf"flooded\.jpg: .*more than 1000 markers and fill bytes {where}"):
        load_image(path)
    path.write_bytes(flooded(500, where))  # a photo's EXIF, ICC profile and tables are tens of them
    assert load_image(path).size == (64, 48)


@pytest.mark.parametrize("kind", [b"IDAT", b"tIME"])
def test_a_png_of_more_chunks_than_any_photo_holds_is_refused_naming_the_file_unread(tmp_path: Path, kind):
    # Each chunk a step of Pillow's reader in Python however small: a million empty IDATs (12 MB) held a decoding
    # thread 2.8 s, a million tIMEs (19 MB) 3.0 s. Refused past 10,000 (one a KB past that), before Pillow reads them.
    path = tmp_path / "flooded.png"
    path.write_bytes(chunk_flooded(200_000, kind))
    started = time.perf_counter()
    with pytest.raises(ImageError, match=r"flooded\.png: .*a PNG of more than 10000 chunks"):
        load_image(path)
    assert time.perf_counter() - started < 0.3
    path.write_bytes(chunk_flooded(5_000, kind))  # within the bound: read
    assert load_image(path).size == (64, 48)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_large_png_in_small_chunks_is_read(tmp_path: Path):
    """One chunk a KB of the file is allowed past the first 10,000: a large photo in 1 KB chunks is not refused."""
    noise = np.random.default_rng(0).integers(0, 256, (1800, 2100, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG", compress_level=1)
    path = tmp_path / "large.png"
    path.write_bytes(rechunked(buf.getvalue(), 1024))
    assert path.stat().st_size // 1036 > 10_000  # more chunks than the first bound
    assert load_image(path).size == (2100, 1800)
