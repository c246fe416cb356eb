"""Peak memory of reading an uploaded photo into 8-bit RGB, per kind of pixel, side by side in one run.

    .venv/bin/python bench/decode_memory.py                 # 25 MP (5000 x 5000) TIFFs
    .venv/bin/python bench/decode_memory.py --side 3000 --json runs/decode_memory.json

Each kind (8-bit RGB, RGBA with transparency, 16-bit grey, 32-bit integer grey, float grey) is written once as a
deflated TIFF, then decoded by `bbuvl.serve.images.decode_image` in a fresh process of its own, which reports its
peak resident memory above what it held before decoding (Linux's VmHWM, reset just before). Printed: bytes a pixel
at the peak, and the ratio to 8-bit RGB's, the number `data/read_cost.py`'s `read_cost` charges each kind against
the pixel limit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_files import refuse_foreign, write_report
from PIL import Image

KINDS = {  # name -> (numpy dtype, channels, Pillow mode or None for Pillow's own)
    "8-bit RGB": (np.uint8, 3, None),
    "RGBA": (np.uint8, 4, None),
    "16-bit grey": (np.uint16, 0, None),
    "32-bit grey": (np.int32, 0, "I"),
    "float grey": (np.float32, 0, "F"),
}

CHILD = r"""
import json, sys
from bbuvl.serve.images import decode_image

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])  # KiB

data = open(sys.argv[1], "rb").read()
open("/proc/self/clear_refs", "w").write("5")  # the peak restarts from what is held now (Linux)
before = status("VmRSS")
rgb = decode_image(data, 10**10)
print(json.dumps({"kib": status("VmHWM") - before, "size": rgb.size, "mode": rgb.mode}))
"""


def write(kind: str, side: int, folder: Path) -> Path:
    """A side x side TIFF of `kind`, with values over its whole range (so rescaling has work to do)."""
    dtype, channels, mode = KINDS[kind]
    rng = np.random.default_rng(0)
    shape = (side, side, channels) if channels else (side, side)
    if np.issubdtype(dtype, np.floating):
        a = rng.random(shape, dtype=np.float32) * 1000.0
    else:
        a = rng.integers(0, min(np.iinfo(dtype).max, 1 << 20), shape).astype(dtype)
    path = folder / f"{kind.replace(' ', '_')}.tif"
    (Image.fromarray(a, mode) if mode else Image.fromarray(a)).save(path, "TIFF", compression="tiff_adobe_deflate")
    return path


def main() -> None:
    """Decode each kind in a fresh process and print its peak bytes a pixel beside 8-bit RGB's."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=5000, help="photo side in pixels (5000: 25 MP)")
    ap.add_argument("--json", type=Path, help="also write {kind: bytes a pixel at the peak} there")
    args = ap.parse_args()
    if args.json:  # before minutes of decoding: a mistyped path is refused, not replaced at the end
        try:
            refuse_foreign(args.json, lambda report: isinstance(report, dict) and set(report) == set(KINDS),
                           "decode_memory report")
        except ValueError as e:
            raise SystemExit(str(e)) from None
    pixels = args.side * args.side
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            path = write(kind, args.side, Path(tmp))
            out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append((kind, got["kib"] * 1024 / pixels))
    base = rows[0][1]
    if args.json:
        write_report(args.json, dict(rows))
    print(f"{args.side} x {args.side} photos ({pixels / 1e6:.0f} MP), peak resident memory of decode_image:")
    for kind, per_pixel in rows:
        print(f"  {kind:<12} {per_pixel:6.1f} bytes a pixel  {per_pixel / base:5.2f}x 8-bit RGB")


if __name__ == "__main__":
    main()
