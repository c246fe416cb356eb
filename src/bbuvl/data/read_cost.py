"""What reading a photo into 8-bit RGB costs, told from its header before a pixel is decoded (docs/serving.md, "Bad
input"): the one measure every pixel limit counts in, the server's (serve/images.py) and Pillow's for every command
that reads photos (data/images.py)."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, replace
from typing import BinaryIO

from PIL import Image

# The bytes one pixel of an 8-bit photo takes at the peak of reading it into RGB: the unit a pixel limit counts in.
# Measured at 8.2-9.6 for 8-bit TIFFs (bench/decode_memory.py) and 8.0-8.3 for colour JPEGs (bench/jpeg_memory.py):
# the low end, so that what a decoder holds besides the pixels is charged as at least as many pixels as it costs.
PIXEL_BYTES = 8
# libjpeg keeps 64 coefficients of 2 bytes for each 8x8 block of each component, for the whole stored photo and
# whatever scale it is decoded at, when a JPEG is coded in several scans (progressive, or sequential with a component
# scanned on its own): 2 bytes a sample, 3 a pixel of a common (4:2:0) colour photo, measured by bench/jpeg_memory.py.
# A JPEG read in one scan holds a few rows of blocks.
BLOCK_BYTES = 128
# Start-of-frame markers (the second byte): the frame's coding, and with it the photo's size and components
FRAMES = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
PROGRESSIVE_FRAMES = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
ARITHMETIC_FRAMES = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# A JPEG coded with Huffman tables (all but arithmetic coding) holds at least 1 bit for each block of each component
# (its DC code): 2.0 bits for a photo of one flat colour, 6.9 at the least and 60.9 in the middle of the image data
# of the demo's 2,514 JPEGs (docs/serving.md, "Bad input"). A file with under 1/8 of a bit for each is not the photo
# its header claims: a header written over (a 16x16 photo claiming 16000x16000) or a file cut far short. An
# arithmetic-coded JPEG of one colour takes 0.002 bits a block, so it is never judged by its bytes.
LEAST_BITS_PER_BLOCK = 1 / 8
# Each scan of a JPEG is a pass of its decoder over every block of the components it holds, however few bytes it takes:
# an end-of-band run codes a whole photo's blocks in a few bytes, so a scan repeated costs a pass for each dozen bytes
# (a 70 KB JPEG of 1,010 scans of a 2236x2236 photo took 7.3 s of a decoding thread, 10 of them 0.09 s; docs/serving.md,
# "Bad input"). libjpeg writes a progressive colour photo in 10 scans, a grey one in 6: past ten times that, refused.
MAX_SCANS = 100
# Markers (and fill bytes) before a JPEG's first scan, and among its scans: a photo holds tens (its EXIF, XMP and ICC
# profile, its tables and frame; its scans and theirs). Each is a step in Python of Pillow's opener and of this walk,
# whatever its size: 10 MB of empty segments held Pillow's opener 6 s and this walk 16 s before a pixel was decoded
# (docs/serving.md, "Bad input"); past this many, the photo is refused unread.
MAX_MARKERS = 1000
# Chunks of a PNG: a photo holds tens besides its image data, which encoders cut into chunks of 8-64 KB (libpng's 8 KB:
# 12,800 for a 100 MB photo). Pillow's reader handles each in Python however small: 12 MB of empty IDAT chunks (a
# million) held a decoding thread 2.8 s, 19 MB of tIME chunks 3.0 s (docs/serving.md, "Bad input"). Past
# `MAX_PNG_CHUNKS`, or one for each `PNG_BYTES_PER_CHUNK` of the file when that is more, the photo is refused unread.
MAX_PNG_CHUNKS = 10_000
PNG_BYTES_PER_CHUNK = 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class JpegLayout:
    """What a JPEG's markers say up to its first scan: how its frame is coded and what its scans hold."""

    frame: int  # the start-of-frame marker's second byte (0xC0 baseline, 0xC2 progressive, ...)
    first_scan: int  # the components the first scan holds
    scan_bytes: int  # the bytes from the first scan's header to the end of the file
    scans: int = 1  # the scans up to the end of the image, counted up to MAX_SCANS + 1
    data_at: int = 0  # where in the file the first scan's image data begins (its header read)


@dataclass(frozen=True)
class FirstScan:
    """What the walk of a JPEG's markers up to its first scan found, before Pillow's opener read them (`check_photo`):
    its layout, None when its markers do not read as a JPEG's up to a scan. Its later scans are not counted yet:
    `read_cost` counts them from where the walk stopped, rather than walk the markers again from the start."""

    layout: JpegLayout | None


@dataclass(frozen=True)
class ReadCost:
    """What reading a photo into 8-bit RGB costs, in pixels of an 8-bit photo (`PIXEL_BYTES` each)."""

    per_pixel: int = 1  # for each pixel decoded: 2 for 16-bit, 3 for 32-bit, float or transparent
    kind: str = "8-bit colour"
    mode: str = "RGB"
    held: int = 0  # held whatever scale it is decoded at: the coefficients of a JPEG coded in several scans
    held_by: str = ""  # what holds them, in words ("a progressive JPEG")
    short: str | None = None  # why the file cannot hold the pixels its header claims
    slow: str | None = None  # why reading it takes its decoder far longer than its pixels do (`MAX_SCANS`)

    def at(self, size: tuple[int, int]) -> int:
        """The pixels of an 8-bit photo that reading the photo at `size` (its stored size, or the reduced one a JPEG
        is decoded at) costs."""
        return size[0] * size[1] * self.per_pixel + self.held

    def words(self, stored: tuple[int, int]) -> str:
        """What the photo of `stored` size is and what its decoder holds at any scale, e.g. '16000x16000 pixels, a
        progressive JPEG whose decoder holds the coefficients of all of them at any scale (488 MiB, as much as ...)'."""
        return (f"{stored[0]}x{stored[1]} pixels, {self.held_by} whose decoder holds the coefficients of all of them at "
                f"any scale ({self.held * PIXEL_BYTES / 2**20:.0f} MiB, as much as {self.held} pixels of an 8-bit photo)")


def read_cost(im: Image.Image, first: FirstScan | None = None) -> ReadCost:
    """What reading an opened photo (its header read, no pixel decoded) into 8-bit RGB costs: its mode's cost for
    each pixel decoded, and for a JPEG coded in several scans, the coefficients of its whole stored size; a JPEG whose
    bytes are too few for its size is told `short`. `first`: what `check_photo` found of its markers before Pillow
    opened it, from the same bytes (its scans are then counted from its first scan on); None: walked here."""
    per_pixel, kind = _mode_cost(im)
    if im.format not in ("JPEG", "MPO") or im.fp is None:
        return ReadCost(per_pixel, kind, im.mode)
    layout = jpeg_layout(im.fp) if first is None else later_scans_counted(im.fp, first.layout)
    layers = getattr(im, "layer", [])
    blocks = jpeg_blocks(im.size, [(h, v) for _, h, v, _ in layers])
    held_by = _held_by(layout, len(layers))
    held = -(-blocks * BLOCK_BYTES // PIXEL_BYTES) if held_by else 0
    return ReadCost(per_pixel, kind, im.mode, held, held_by, _short(im.size, layout, blocks), _slow(layout))


def _slow(layout: JpegLayout | None) -> str | None:
    """Why a JPEG of `layout` takes its decoder far longer than its pixels do (more scans than `MAX_SCANS`), or None."""
    if layout is None or layout.scans <= MAX_SCANS:
        return None
    return (f"a JPEG of more than {MAX_SCANS} scans, each a pass of its decoder over the whole photo (an encoder "
            "writes 6 to 10): a few hundred KB of them hold a decoder for minutes; save it again as a baseline JPEG")


def _held_by(layout: JpegLayout | None, components: int) -> str:
    """What makes a JPEG's decoder hold every block's coefficients, in words ('' when nothing does: it is read in one
    scan, a few rows of blocks at a time)."""
    if layout is None:  # a layout its markers do not tell, which libjpeg may still read: charged as the costlier one
        return "a JPEG whose scans its markers do not tell (charged as a progressive one)"
    if layout.frame in PROGRESSIVE_FRAMES:
        return "a progressive JPEG"
    if layout.first_scan < components:
        return "a JPEG whose components are scanned one by one"
    return ""


def _short(size: tuple[int, int], layout: JpegLayout | None, blocks: int) -> str | None:
    """Why a JPEG of `size` and `blocks` cannot be the photo its header claims (`LEAST_BITS_PER_BLOCK`), or None."""
    if layout is None or layout.frame in ARITHMETIC_FRAMES or layout.scan_bytes * 8 >= blocks * LEAST_BITS_PER_BLOCK:
        return None
    return (f"the file holds {layout.scan_bytes} bytes of image data, and a {size[0]}x{size[1]} JPEG holds at least "
            f"{blocks // 8} ({blocks} blocks of 8x8 pixels, at least a bit each): its header claims pixels its data does "
            "not hold (a file cut short, or a header written over)")


def _mode_cost(im: Image.Image) -> tuple[int, str]:
    """How many times an 8-bit RGB photo's memory per pixel `im`'s mode takes to read into 8-bit RGB, and what it is.

    `bench/decode_memory.py`, the peak bytes a pixel of `decode_image` on 4 MP and 25 MP TIFFs: 8-bit RGB 9.6 and 8.2,
    16-bit grey 16.2 and 10.0, 32-bit and float grey 20.2 and 13.9 (rescaled to 8 bits a few rows at a time,
    data/images.py; 38-40 on 25 MP when the whole photo was widened to 64-bit floats at once). Colour with
    transparency is composited on white through a second image: 14.6 and 13.3, charged 3 as measured before.
    """
    if im.mode.startswith("I;16"):
        return 2, "16-bit"
    if im.mode.startswith("I") or im.mode == "F":
        return 3, "float" if im.mode == "F" else "32-bit"
    if im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (im.mode == "P" and "transparency" in im.info):
        return 3, "colour with transparency"
    return 1, "8-bit colour"


def jpeg_blocks(size: tuple[int, int], sampling: list[tuple[int, int]]) -> int:
    """The 8x8 blocks of all components of a JPEG of `size` whose components are sampled `sampling` ((horizontal,
    vertical) factors each), as libjpeg lays out their coefficients."""
    if not sampling:
        return 0
    most_h, most_v = (max(max(f[i] for f in sampling), 1) for i in (0, 1))
    return sum(_padded_blocks(size[0], h, most_h) * _padded_blocks(size[1], v, most_v) for h, v in sampling)


def _padded_blocks(side: int, factor: int, most: int) -> int:
    """The blocks along one side of a component sampled `factor` of `most`, rounded up to whole sampling units."""
    factor = max(factor, 1)
    blocks = -(-(-(-side * factor // most)) // 8)
    return -(-blocks // factor) * factor


def jpeg_layout(fp: BinaryIO, scans: bool = True) -> JpegLayout | None:
    """The layout of the JPEG in `fp` from its start, read marker by marker up to its first scan (`fp` left where it
    was), and its scans counted when `scans` (else 1); None when its markers do not read as a JPEG's up to a scan;
    ValueError when more than `MAX_MARKERS` precede its first scan, or lie among the scans counted."""
    at = fp.tell()
    try:
        end = fp.seek(0, io.SEEK_END)
        fp.seek(0)
        return _walk(fp, end, scans) if fp.read(2) == b"\xff\xd8" else None
    finally:
        fp.seek(at)


def later_scans_counted(fp: BinaryIO, layout: JpegLayout | None) -> JpegLayout | None:
    """`layout` (read up to the first scan of the JPEG in `fp`) with its scans counted from that scan's image data on,
    as `jpeg_layout` counts them (`fp` left where it was); ValueError past `MAX_MARKERS` among them."""
    if layout is None:
        return None
    at = fp.tell()
    try:
        fp.seek(layout.data_at)
        return replace(layout, scans=1 + _later_scans(fp, MAX_SCANS))
    finally:
        fp.seek(at)


def check_jpeg_markers(fp: BinaryIO) -> FirstScan:
    """ValueError when more than `MAX_MARKERS` markers and fill bytes precede the first scan of the JPEG in `fp` (left
    where it was): what to ask before Pillow's opener steps through them one by one. What the walk found up to that
    scan is returned, for `read_cost` to go on from."""
    return FirstScan(jpeg_layout(fp, scans=False))


def check_photo(fp: BinaryIO) -> FirstScan | None:
    """The checks to make of a photo's bytes in `fp` (left where it was) before Pillow's opener reads them:
    `check_jpeg_markers` for a JPEG, whose walk it returns, `check_png_chunks` for anything else (None)."""
    at = fp.tell()
    try:
        fp.seek(0)
        jpeg = fp.read(3) == b"\xff\xd8\xff"  # its SOI marker and the next marker's first byte
    finally:
        fp.seek(at)
    if jpeg:
        return check_jpeg_markers(fp)
    check_png_chunks(fp)
    return None


def check_png_chunks(fp: BinaryIO) -> None:
    """ValueError when the PNG in `fp` (left where it was) holds more chunks than `MAX_PNG_CHUNKS`, or than one for each
    `PNG_BYTES_PER_CHUNK` of it: what to ask before Pillow's reader steps through them one by one. Each step here is a
    header read and a seek past the chunk's data, so the walk stops where the count is past the bound."""
    at = fp.tell()
    try:
        most = max(MAX_PNG_CHUNKS, fp.seek(0, io.SEEK_END) // PNG_BYTES_PER_CHUNK)
        fp.seek(0)
        if fp.read(8) != PNG_SIGNATURE:
            return
        for _ in range(most + 1):
            head = fp.read(8)
            if len(head) < 8 or head[4:] == b"IEND":  # a file cut short is Pillow's to name
                return
            fp.seek(int.from_bytes(head[:4], "big") + 4, io.SEEK_CUR)  # its data and CRC
        raise ValueError(f"a PNG of more than {most} chunks (a photo holds tens, and one for each 8-64 KB of its "
                         "image data), each a step of its reader however small: save it again")
    finally:
        fp.seek(at)


def _walk(fp: BinaryIO, end: int, scans: bool = True) -> JpegLayout | None:
    """`jpeg_layout` from just after the start-of-image marker."""
    frame, steps = None, 0
    while _to_marker(fp):
        marker = fp.read(1)
        steps += 1
        while marker == b"\xff":  # fill bytes before a marker
            marker = fp.read(1)
            steps += 1
            if steps > MAX_MARKERS:
                break
        if steps > MAX_MARKERS:
            raise ValueError(_too_many_markers("before its image data"))
        if not marker or marker[0] == 0xD9:  # the end, or the end of the image, before a scan
            return None
        if marker[0] in (0x00, 0x01) or 0xD0 <= marker[0] <= 0xD8:  # markers without a length
            continue
        length = int.from_bytes(fp.read(2), "big")  # counting its own 2 bytes: under 2, the file is no JPEG (and
        if length < 2:  # a seek back by it would read the same marker for ever)
            return None
        if marker[0] == 0xDA:
            count = fp.read(1)
            if not count or frame is None:
                return None
            scan_bytes = end - fp.tell() + 5
            data_at = fp.seek(length - 3, io.SEEK_CUR)  # the rest of its header: its image data follows
            return JpegLayout(frame, count[0], scan_bytes, 1 + _later_scans(fp, MAX_SCANS) if scans else 1, data_at)
        if marker[0] in FRAMES and frame is None:
            frame = marker[0]
        fp.seek(length - 2, io.SEEK_CUR)
    return None


def _too_many_markers(where: str) -> str:
    """Why a JPEG of more than `MAX_MARKERS` markers `where` is not read."""
    return (f"a JPEG of more than {MAX_MARKERS} markers and fill bytes {where} (a photo holds tens), each a step of its "
            "reader however small: save it again")


def _later_scans(fp: BinaryIO, most: int) -> int:
    """The scans after the one whose image data `fp` stands at, up to the end of the image (its EOI marker, else of
    the file), counted up to `most` + 1: marker by marker, each segment skipped by its length, as libjpeg reads them
    (a count of 0xFFDA and 0xFFD9 bytes is fooled by a comment or a table holding them); ValueError past
    `MAX_MARKERS` markers."""
    scans = 0
    for _ in range(MAX_MARKERS):
        marker = _next_marker(fp)
        if marker is None or marker == 0xD9 or scans > most:
            return scans
        scans += marker == 0xDA
        if marker == 0xD8:  # no length
            continue
        length = int.from_bytes(fp.read(2), "big")  # counting its own 2 bytes; a scan's image data follows its header
        if length < 2:
            return scans
        fp.seek(length - 2, io.SEEK_CUR)
    raise ValueError(_too_many_markers("among its scans"))


# A marker: 0xFF (the last of any fill bytes), then a byte that is none of 0x00 (a 0xFF of image data), a restart
# marker (0xD0-0xD7, within a scan's data) or TEM (0x01, no length; never written). A literal first byte: searched at C
# speed (7 ms for a 14 MB JPEG, where a pattern for the fill bytes took 168 ms)
_MARKER = re.compile(rb"\xff([^\x00\x01\xd0-\xd7\xff])")


def _next_marker(fp: BinaryIO, chunk: int = 1 << 16) -> int | None:
    """The next marker's second byte from where `fp` stands, image data skipped (a chunk at a time, searched in C);
    `fp` left just after it; None at the end of the file."""
    carried = b""
    while block := fp.read(chunk):
        data = carried + block
        found = _MARKER.search(data)
        if found is not None:
            fp.seek(found.end() - len(data), io.SEEK_CUR)
            return found.group(1)[0]
        carried = b"\xff" if data.endswith(b"\xff") else b""  # a marker split between two chunks
    return None


def _to_marker(fp: BinaryIO, chunk: int = 1 << 16) -> bool:
    """Move `fp` past the next 0xFF byte, skipping what lies between segments as Pillow and libjpeg skip it (a chunk
    at a time, not a byte at a time in Python); False at the end of the file."""
    while block := fp.read(chunk):
        found = block.find(b"\xff")
        if found >= 0:
            fp.seek(found + 1 - len(block), io.SEEK_CUR)
            return True
    return False
