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
