"""Real JPEGs of a phone's 200 MP mode (16320x12240) and of any size in bytes, built in a fraction of a second.

Encoding 200 MP of noise takes Pillow seconds and 600 MB of RGB; instead one strip of 16 rows of 16-pixel blocks is
encoded with a restart marker after each row, and its rows are repeated down to the full height. A restart marker
resets the decoder's DC prediction, so every row of blocks decodes on its own and any sequence of them, renumbered
RST0-RST7 in turn, is a valid baseline JPEG (ITU T.81, section F.1.2.3). Noisy rows cost ~230 KB each, flat ones ~2 KB:
their mix gives the size asked, to within one row.
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

PHONE_200MP = (16320, 12240)
_BLOCK = 16  # the MCU height of 4:2:0 subsampling, Pillow's default


def _strip(width: int) -> tuple[bytes, list[bytes], bytes]:
    """A JPEG of 8 noisy then 8 flat block rows, `width` wide, as its headers up to its entropy-coded data, that data's
    16 rows, and the bytes after them (EOI)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:8 * _BLOCK, 0:width]
    noisy = np.stack([x * 255 // width, y * 2, (x + y) % 256], axis=-1) + rng.integers(-60, 60, (*x.shape, 3))
    flat = np.full((8 * _BLOCK, width, 3), (120, 130, 140))
    pixels = np.clip(np.concatenate([noisy, flat]), 0, 255).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90, restart_marker_rows=1)
    data = out.getvalue()
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    end = data.rindex(b"\xff\xd9")
    rows = re.split(rb"\xff[\xd0-\xd7]", data[start:end])  # 0xFF in the data is stuffed as FF 00: only markers match
    assert len(rows) == 16, len(rows)
    return data[:start], rows, data[end:]


def big_jpeg(size: tuple[int, int] = PHONE_200MP, nbytes: int | None = None) -> bytes:
    """A valid JPEG of `size` pixels (width and height multiples of 16) of `nbytes` bytes to within one noisy row of
    blocks (~10 bytes a pixel of width; ValueError when `size` cannot hold `nbytes`), all noise when `nbytes` is None."""
    width, height = size
    assert width % _BLOCK == 0 and height % _BLOCK == 0, size
    head, rows, tail = _strip(width)
    sof = re.search(rb"\xff[\xc0\xc1]", head).start()  # SOF0/1: length (2), precision (1), height (2), width (2)
    head = head[:sof + 5] + height.to_bytes(2, "big") + head[sof + 7:]
    count = height // _BLOCK
    noisy_row, flat_row = sum(map(len, rows[:8])) / 8, sum(map(len, rows[8:])) / 8
    fixed = len(head) + len(tail) + 2 * (count - 1)
    n_noisy = count if nbytes is None else round((nbytes - fixed - count * flat_row) / (noisy_row - flat_row))
    n_noisy = max(0, min(count, n_noisy))
    picked = [rows[i % 8] for i in range(n_noisy)] + [rows[8 + i % 8] for i in range(count - n_noisy)]
    body = bytearray(head)
    for i, row in enumerate(picked):
        if i:
            body += bytes((0xFF, 0xD0 + (i - 1) % 8))
        body += row
    body += tail
    if nbytes is not None and abs(len(body) - nbytes) > noisy_row:
        raise ValueError(f"a {width}x{height} JPEG of these rows cannot be {nbytes} bytes (the nearest is {len(body)})")
    return bytes(body)
