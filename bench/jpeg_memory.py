"""Peak memory of reading a JPEG coded in several scans (progressive) beside the same photo coded in one (baseline).

    .venv/bin/python bench/jpeg_memory.py                       # 2000, 4000 and 8000 pixel squares
    .venv/bin/python bench/jpeg_memory.py --sides 3000 --json runs/jpeg_memory.json

Each kind (grey, 4:2:0 colour, 4:4:4 colour; baseline and progressive) is written once a side as a noisy gradient at
quality 90, then read in a fresh process of its own, twice: whole by `bbuvl.serve.images.decode_image` (what the
server and `load_image` do with a photo within the limit), and at 1/8 of its size by Pillow's `draft` (what a photo
past the limit is read at). Each reports its peak resident memory above what it held before (Linux's VmHWM, reset
just before). Printed for each kind and side: bytes a stored pixel at the peak, whole and at 1/8; for a progressive
kind, what it holds beyond its baseline twin at 1/8, beside what `data/read_cost.py` charges it (its `held` pixels of
PIXEL_BYTES each). Numbers: docs/serving.md, "Bad input".
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

from bbuvl.data.read_cost import PIXEL_BYTES, read_cost

KINDS = {  # name -> (Pillow mode, subsampling, progressive)
    "grey baseline": ("L", 0, False),
    "grey progressive": ("L", 0, True),
    "4:2:0 baseline": ("RGB", 2, False),
    "4:2:0 progressive": ("RGB", 2, True),
    "4:4:4 baseline": ("RGB", 0, False),
    "4:4:4 progressive": ("RGB", 0, True),
}

CHILD = r"""
import json, sys
from PIL import Image

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])  # KiB

path, how = sys.argv[1:]
data = open(path, "rb").read()
if how == "whole":
    from bbuvl.serve.images import decode_image
open("/proc/self/clear_refs", "w").write("5")  # the peak restarts from what is held now (Linux)
before = status("VmRSS")
if how == "whole":
    size = decode_image(data, 10**10).size
else:
    with Image.open(path) as im:
        im.draft(None, (im.width // 8, im.height // 8))
        im.load()
        size = im.size
print(json.dumps({"kib": status("VmHWM") - before, "size": size}))
"""


def write(kind: str, side: int, folder: Path) -> Path:
    """A side x side JPEG of `kind`: a gradient with noise, so its coefficients are a photo's, not a flat colour's."""
    mode, subsampling, progressive = KINDS[kind]
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, side, dtype=np.float32)
    channels = 1 if mode == "L" else 3
    noise = rng.integers(0, 56, (side, side, channels), dtype=np.uint8)
    pixels = (ramp[None, :, None] + noise).astype(np.uint8)
    path = folder / f"{side}_{kind.replace(' ', '_').replace(':', '')}.jpg"
    image = Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode)
    image.save(path, "JPEG", quality=90, subsampling=subsampling, progressive=progressive)
    return path


def peak(path: Path, how: str) -> float:
    """Peak bytes a stored pixel of reading the JPEG at `path` in a fresh process, `how` ('whole' or 'eighth')."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), how], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    with Image.open(path) as im:
        pixels = im.width * im.height
    return got["kib"] * 1024 / pixels


def charged(path: Path) -> float:
    """The bytes a stored pixel that `read_cost` charges a JPEG for what its decoder holds at any scale."""
    with Image.open(path) as im:
        return read_cost(im).held * PIXEL_BYTES / (im.width * im.height)


def measure(sides: list[int]) -> dict[str, dict[str, dict[str, float]]]:
    """{side: {kind: {whole, eighth, and for a progressive kind held (beyond its baseline twin at 1/8), charged}}}."""
    report: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in sides:
            rows: dict[str, dict[str, float]] = {}
            for kind in KINDS:
                path = write(kind, side, Path(tmp))
                rows[kind] = {"whole": peak(path, "whole"), "eighth": peak(path, "eighth")}
                if KINDS[kind][2]:
                    twin = rows[kind.replace("progressive", "baseline")]
                    rows[kind] |= {"held": rows[kind]["eighth"] - twin["eighth"], "charged": charged(path)}
                path.unlink()
            report[str(side)] = rows
    return report


def main() -> None:
    """Read each kind in fresh processes and print its peak bytes a stored pixel, and what a progressive one holds."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", type=int, nargs="+", default=[2000, 4000, 8000], help="photo sides in pixels")
    ap.add_argument("--json", type=Path, help="also write {side: {kind: bytes a stored pixel}} there")
    args = ap.parse_args()
    if args.json:  # before minutes of decoding: a mistyped path is refused, not replaced at the end
        try:
            refuse_foreign(args.json, lambda report: isinstance(report, dict) and all(
                isinstance(rows, dict) and set(rows) == set(KINDS) for rows in report.values()), "jpeg_memory report")
        except ValueError as e:
            raise SystemExit(str(e)) from None
    report = measure(args.sides)
    if args.json:
        write_report(args.json, report)
    print("peak resident memory, bytes a stored pixel: whole (decode_image), at 1/8 (draft); a progressive JPEG's "
          "beyond its baseline twin at 1/8, and what read_cost charges it")
    for side, rows in report.items():
        print(f"{side} x {side} ({int(side) ** 2 / 1e6:.0f} MP):")
        for kind, row in rows.items():
            held = f"  held {row['held']:5.2f}  charged {row['charged']:5.2f}" if "held" in row else ""
            print(f"  {kind:<18} whole {row['whole']:6.2f}  at 1/8 {row['eighth']:6.2f}{held}")


if __name__ == "__main__":
    main()
