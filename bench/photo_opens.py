"""Opening a photo file to read it, before and after the checks shared one stream, side by side in one run.

    .venv/bin/python bench/photo_opens.py                      # 1,000 small photos of each kind, 3 rounds
    .venv/bin/python bench/photo_opens.py --photos 200 --rounds 2 --json runs/photo_opens.json

Each kind (a baseline JPEG, a progressive JPEG, a PNG; 224x168 noisy photos, each file its own) is written once,
then every photo read by `load_image` (what predict, data check and training read a photo with) the old way and the
new, alternating which goes first each round so that the machine's noise hits both alike; the first round warms up
and is not timed. Old: the file opened once to tell a JPEG, once for the check of its markers or chunks, once by
Pillow, and `read_cost` walked the JPEG's markers again from its start. New (data/images.py `_opened`): one stream
for the checks and Pillow, and `read_cost` counting the scans from where the check's walk stopped. Printed for each
kind: the files opened and the marker walks from a JPEG's start for each photo (Python's audit hook; calls of
data/read_cost.py's walk), the CPU milliseconds a photo in the best timed round, old and new, and their ratio; and
whether both read the same pixels (they must).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from bench_files import refuse_foreign, write_report
from PIL import Image, JpegImagePlugin

import bbuvl.data.images as images
import bbuvl.data.read_cost as read_cost_module
from bbuvl.data.images import (ImageError, JpegTooLarge, _named_errors, check_read_cost, exif_orientation, jpeg_scale,
                               load_image, starts_as_jpeg, unsupported_format, JPEG_SCALES)
from bbuvl.data.input_paths import NOTHING_THERE, file_kind
from bbuvl.data.read_cost import check_jpeg_markers, check_png_chunks, read_cost

KINDS = {"baseline JPEG": ("JPEG", ".jpg", {"quality": 90}),
         "progressive JPEG": ("JPEG", ".jpg", {"quality": 90, "progressive": True}),
         "PNG": ("PNG", ".png", {})}
NEW_OPENED = images._opened


def _old_open_photo(source: Path) -> Image.Image:
    """`open_photo` as it was: a file opened to tell a JPEG, again for its check, and by Pillow."""
    check = check_jpeg_markers if starts_as_jpeg(source) else check_png_chunks
    with source.open("rb") as fh:
        check(fh)
    try:
        return Image.open(source)
    except Image.DecompressionBombError:
        if not starts_as_jpeg(source):
            raise
    return JpegImagePlugin.jpeg_factory(os.fspath(source))


@contextmanager
def _old_opened(path: Path, decode: bool, at_least: tuple[int, int] | None) -> Iterator[tuple[Image.Image, tuple[int, int]]]:
    """`_opened` as it was: Pillow opening the file by its name, and `read_cost` walking a JPEG from its start."""
    with _named_errors(path, "decode image" if decode else "read image header"):
        kind = file_kind(path)
        if kind == "a folder":
            raise ImageError(f"{path}: a folder, not an image file")
        if kind is not None and kind not in NOTHING_THERE:
            raise ImageError(f"{path}: not a regular file ({kind}), so never read as a photo")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = _old_open_photo(path)
    with im:
        if (why := unsupported_format(im.format)) is not None:
            raise ImageError(f"{path}: {why}")
        stored = im.size
        if decode:
            with _named_errors(path, "decode image"):
                cost = read_cost(im)
                need = jpeg_scale(stored, cost=cost) if im.format in ("JPEG", "MPO") else 1
                scale = need
                if at_least is not None and im.format in ("JPEG", "MPO"):
                    wanted = at_least if exif_orientation(im) < 5 else (at_least[1], at_least[0])
                    scale = max(need, max(s for s in JPEG_SCALES if s == 1 or (
                        stored[0] // s >= wanted[0] and stored[1] // s >= wanted[1])))
                if scale > 1:
                    im.draft(None, (stored[0] // scale, stored[1] // scale))
                    if im.size == stored and need > 1:
                        raise JpegTooLarge(f"{stored[0]}x{stored[1]} pixels, and Pillow cannot decode this JPEG at a "
                                           "reduced scale")
                check_read_cost(im, path, cost, stored)
                im.load()
        yield im, stored


class Counts:
    """Files opened under one folder (Python's audit hook) and marker walks from a JPEG's start, while `on`."""

    def __init__(self, folder: Path):
        self.folder, self.on, self.opens, self.walks = str(folder), False, 0, 0
        sys.addaudithook(self._audit)
        walk = read_cost_module._walk

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.walks += self.on
            return walk(*args, **kwargs)

        read_cost_module._walk = counted

    def _audit(self, event: str, args: tuple) -> None:
        if self.on and event == "open" and isinstance(args[0], (str, Path)) and str(args[0]).startswith(self.folder):
            self.opens += 1


def _read_all(paths: list[Path], opened: Callable, counts: Counts) -> tuple[float, int, int, list[bytes]]:
    """CPU seconds to read every photo with `_opened` as `opened`, the opens and walks it took, and each photo's
    pixels."""
    images._opened = opened
    counts.opens = counts.walks = 0
    counts.on = True
    try:
        # CPU time of this process: the machine's other work, which wall time counts, is noise to both ways alike
        start = time.process_time()
        pixels = [load_image(p).image.tobytes() for p in paths]
        return time.process_time() - start, counts.opens, counts.walks, pixels
    finally:
        counts.on = False
        images._opened = NEW_OPENED


def main() -> None:
    """Read each kind's photos the old way and the new, and print opens, walks and time per photo, and the ratio."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=1000, help="photos of each kind (default 1000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, the first a warm-up (default 3)")
    ap.add_argument("--json", type=Path, help="write the numbers here too")
    args = ap.parse_args()
    if args.photos < 1 or args.rounds < 2:
        ap.error(f"--photos at least 1 and --rounds at least 2, got {args.photos} and {args.rounds}")
    if args.json is not None:
        try:
            refuse_foreign(args.json, lambda r: isinstance(r, dict) and set(r) == set(KINDS), "photo_opens report")
        except ValueError as e:
            raise SystemExit(str(e)) from None
    rng = np.random.default_rng(0)
    report: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        counts = Counts(Path(tmp))
        for kind, (fmt, suffix, save) in KINDS.items():
            folder = Path(tmp) / kind.replace(" ", "_")
            folder.mkdir()
            paths = []
            for i in range(args.photos):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (168, 224, 3), dtype=np.uint8)).save(buf, fmt, **save)
                paths.append(folder / f"{i:05d}{suffix}")
                paths[-1].write_bytes(buf.getvalue())
            seconds: dict[str, float] = {"old": float("inf"), "new": float("inf")}
            seen: dict[str, tuple[int, int, list[bytes]]] = {}
            for r in range(args.rounds):
                for name in (("old", "new") if r % 2 else ("new", "old")):
                    took, opens, walks, pixels = _read_all(paths, _old_opened if name == "old" else NEW_OPENED, counts)
                    seen[name] = (opens, walks, pixels)
                    if r:  # the best round: on a shared machine the others' load is noise, not either way's cost
                        seconds[name] = min(seconds[name], took)
            report[kind] = {name: {"opens_per_photo": seen[name][0] / args.photos,
                                   "walks_per_photo": seen[name][1] / args.photos,
                                   "ms_per_photo": 1000 * seconds[name] / args.photos} for name in ("old", "new")}
            report[kind]["same_pixels"] = seen["old"][2] == seen["new"][2]
    print(f"{args.photos} photos of each kind, 224x168, read by load_image; CPU ms a photo in the best of "
          f"{args.rounds - 1} timed round(s):")
    print(f"  {'kind':<18} {'opens old/new':>13} {'walks old/new':>13} {'ms old':>8} {'ms new':>8} {'new/old':>8}  same")
    for kind, row in report.items():
        old, new = row["old"], row["new"]
        print(f"  {kind:<18} {old['opens_per_photo']:>6.1f}/{new['opens_per_photo']:<6.1f} "
              f"{old['walks_per_photo']:>6.1f}/{new['walks_per_photo']:<6.1f} {old['ms_per_photo']:8.3f} "
              f"{new['ms_per_photo']:8.3f} {new['ms_per_photo'] / old['ms_per_photo']:8.2f}  {row['same_pixels']}")
    if args.json is not None:
        write_report(args.json, report)


if __name__ == "__main__":
    main()
