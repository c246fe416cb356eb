"""PNGs flooded with chunks no photo holds so many of: each a step of Pillow's reader however small."""
from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: its length, type, data and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def chunk_flooded(count: int, kind: bytes = b"IDAT", size: tuple[int, int] = (64, 48)) -> bytes:
    """A PNG of `size` with `count` more `kind` chunks: empty IDATs after its image data, or tIMEs before it."""
    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, "PNG")
    png = buf.getvalue()
    if kind == b"IDAT":
        at = png.index(b"IEND") - 4
        return png[:at] + chunk(b"IDAT", b"") * count + png[at:]
    at = png.index(b"IDAT") - 4
    return png[:at] + chunk(kind, b"\x07\xea\x0c\x01\x00\x00\x00") * count + png[at:]


def rechunked(png: bytes, size: int) -> bytes:
    """`png` with its image data cut into IDAT chunks of `size` bytes (libpng writes 8 KB ones)."""
    at, stream, head, tail = 8, b"", None, b""
    while at < len(png):
        length, kind = int.from_bytes(png[at:at + 4], "big"), png[at + 4:at + 8]
        if kind == b"IDAT":
            head = png[:at] if head is None else head
            stream += png[at + 8:at + 8 + length]
        elif head is not None:
            tail += png[at:at + 12 + length]
        at += 12 + length
    return head + b"".join(chunk(b"IDAT", stream[i:i + size]) for i in range(0, len(stream), size)) + tail
