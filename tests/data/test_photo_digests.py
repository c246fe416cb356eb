"""images.photo_digests: a photo's bytes and its image data, which a JPEG's metadata does not change."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from bbuvl.data.images import file_digest, photo_digests


def segment(marker: int, payload: bytes) -> bytes:
    """One JPEG segment: FF, its marker, its length (2 bytes, counting themselves) and its payload."""
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def test_a_jpeg_keeps_its_image_data_digest_whatever_metadata_is_put_in_and_another_file_is_its_bytes(tmp_path: Path):
    Image.new("RGB", (32, 24), (10, 120, 200)).save(tmp_path / "a.jpg", quality=90)
    data = (tmp_path / "a.jpg").read_bytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    metadata = segment(0xE1, b"Exif\x00\x00" + exif.tobytes()) + segment(0xFE, b"a comment") + segment(0xED, b"IPTC")
    (tmp_path / "b.jpg").write_bytes(data[:2] + metadata + data[2:])
    whole_a, data_a = photo_digests(tmp_path / "a.jpg")
    whole_b, data_b = photo_digests(tmp_path / "b.jpg")
    assert whole_a == file_digest(tmp_path / "a.jpg") and whole_b == file_digest(tmp_path / "b.jpg") != whole_a
    assert data_a == data_b == photo_digests(tmp_path / "b.jpg", whole=False)[1]
    assert photo_digests(tmp_path / "b.jpg", whole=False)[0] == ""
    Image.new("RGB", (32, 24), (200, 20, 10)).save(tmp_path / "c.jpg", quality=90)  # other pixels
    assert photo_digests(tmp_path / "c.jpg")[1] != data_a
    (tmp_path / "cut.jpg").write_bytes(data[:2] + segment(0xE1, b"Exif") + b"\xff\xdb\x00")  # no scan: its bytes decide
    assert photo_digests(tmp_path / "cut.jpg", whole=False)[1] == file_digest(tmp_path / "cut.jpg")
    Image.new("RGB", (32, 24)).save(tmp_path / "p.png")
    png = hashlib.sha256((tmp_path / "p.png").read_bytes()).hexdigest()
    assert photo_digests(tmp_path / "p.png") == (png, png) and photo_digests(tmp_path / "p.png", whole=False) == ("", png)
