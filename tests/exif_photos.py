"""Photos whose EXIF block is damaged the way buggy cameras and editors write it, for the readers' tests."""

from __future__ import annotations

import io
import struct

from PIL import Image


def jpeg_turned_with_a_make_tag_of_the_wrong_type() -> bytes:
    """A 64x48 JPEG whose EXIF says "turn 90 degrees" (orientation 6) and holds its camera make, an ASCII tag, as a
    number: Pillow's ImageOps.exif_transpose fails on it while the pixels and the turn are sound."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, "JPEG")
    entries = struct.pack("<HHII", 0x0112, 3, 1, 6) + struct.pack("<HHII", 0x010F, 5, 1, 8 + 2 + 2 * 12 + 4)
    app1 = b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 2) + entries + b"\x00" * 4 + struct.pack("<II", 1, 2)
    return buf.getvalue()[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + buf.getvalue()[2:]


# EXIF blocks Pillow cannot parse at all: no TIFF header after "Exif", and one cut short after its byte order
UNPARSABLE_EXIF = {"no_tiff_header": b"Exif\x00\x00" + b"A" * 64, "header_cut_short": b"Exif\x00\x00II*\x00"}


def photo_with_an_unparsable_exif_block(source: Image.Image, fmt: str, block: bytes) -> bytes:
    """`source` saved as `fmt` (JPEG, PNG, WEBP) carrying the EXIF `block` as it is (APP1 in a JPEG, eXIf in a PNG,
    EXIF in a WebP): what a camera or an editor that wrote garbage there leaves; an empty `block` writes none."""
    buf = io.BytesIO()
    source.save(buf, fmt, exif=block, **({"lossless": True} if fmt == "WEBP" else {"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()
