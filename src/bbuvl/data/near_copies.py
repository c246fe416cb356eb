"""Near-copies: one photo saved again by a tool (another JPEG quality, PNG, a phone's smaller size, its EXIF turn
written into the pixels), found by its pixels.

`images.photo_digests` finds a copy stored byte for byte, or with only its EXIF rewritten; a re-encoded copy has other
bytes everywhere. Its pixels, shown upright and seen small, are still its original's. Each photo gets a print: an 8x8
thumbnail of its upright pixels in YCbCr (each value the mean of an eighth of the photo's width and height, in grey
levels 0-255). Two photos are near-copies when no value of their prints differs by more than `NEAR_COPY_LEVELS`.

Why not a binary hash (a DCT or difference hash, compared by Hamming distance), nor the prints' correlation: on the
shapes scene, a plain background and a few shapes, most bits of a 64-bit DCT hash are signs of coefficients near zero
(a JPEG at quality 30 flipped 31 of them; two distinct photos differed by 6), and a correlation forgets the background's
colour, which is what told two photos of one shape at one place apart. The largest difference in one eighth of the
frame keeps both: a re-encode moves every value a little, another photo moves some a lot. Colour counts (a shape the
grey of its background is invisible in luminance alone).

A photo whose print spans fewer than `DETAIL_LEVELS` in every channel (a lens cap, a bare wall, a frame of fine noise)
has no print (None) and is never called a copy of anything: its pixels seen small cannot tell it from another such
photo of its colour.

Measured (bench/near_copies.py; docs/data_names.md, "Near-copies"): copies differ by at most 3 levels (JPEG at quality
60 and 30, PNG, WebP, half and quarter size, an EXIF turn written into the pixels), distinct photos of the synthetic
scenes by at least 13 (every pair of 2,866 photos: wide, close-up and shapes, at 640x480, 448x336 and 224x224).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from bbuvl.data.images import ImageError, exif_orientation, open_image, to_rgb, upright
from bbuvl.data.workers import worker_limit

PRINT_SIDE = 8
# A JPEG is decoded at the smallest of libjpeg's scales (Pillow's draft: 1/2, 1/4, 1/8) that keeps this many pixels
# per print value along each side: at 1/8 of a 640x480 photo (10 pixels a value) the draft's print was up to 14 levels
# off the whole decode's, which the photo's PNG copy gets; at 16 pixels or more, 2 (60 synthetic photos).
DRAFT_PER_VALUE = 16
# Between the largest difference of a copy measured (3 levels) and the smallest of two distinct photos (13).
NEAR_COPY_LEVELS = 8.0
# Twice that: frames of grey noise span at most 10 levels once seen small (any two of them were "near-copies"), the
# synthetic photos at least 21 (a shape a little off its background's grey).
DETAIL_LEVELS = 2 * NEAR_COPY_LEVELS


@dataclass(frozen=True)
class NearCopy:
    """Two photos (indices into the list given, `first < second`) whose pixels are one photo's, and the largest
    difference of their prints in grey levels."""

    first: int
    second: int
    levels: float


def photo_print(path: str | Path) -> np.ndarray | None:
    """The print (`[PRINT_SIDE, PRINT_SIDE, 3]` YCbCr float32, 0-255) of a photo file's upright pixels; None for a photo
    without detail. ImageError naming the file when it cannot be decoded."""
    with open_image(path, decode=False) as im:
        try:
            try:
                orientation = exif_orientation(im)  # a PNG's EXIF may follow its pixels: reading it decodes them
            except ValueError:  # a tag that is no number: `data check` names it; the pixels are still the photo's
                orientation = 1
            if im.format in ("JPEG", "MPO"):
                im.draft("YCbCr", (PRINT_SIDE * DRAFT_PER_VALUE,) * 2)
            # As every reader takes it (images.to_rgb): Pillow's own convert clips a 16-bit PNG almost white.
            return print_of(upright(to_rgb(im), orientation))
        except (OSError, SyntaxError, ValueError) as e:  # a truncated or corrupt file
            raise ImageError(f"{path}: cannot decode image: {e}") from None


def print_of(image: Image.Image) -> np.ndarray | None:
    """The print of an upright RGB photo already decoded (`photo_print` without the file); None when it has no
    detail."""
    small = image.resize((PRINT_SIDE, PRINT_SIDE), Image.Resampling.BOX)
    values = np.asarray(small.convert("YCbCr"), dtype=np.float32)
    spread = values.reshape(-1, 3).max(axis=0) - values.reshape(-1, 3).min(axis=0)
    return None if float(spread.max()) < DETAIL_LEVELS else values


def photo_prints(paths: Sequence[Path], workers: int | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> list[np.ndarray | None]:
    """The print of each photo, on a thread pool (Pillow decodes without the GIL); None for a photo without detail, or
    one that cannot be decoded (`data check` names it; a split or an import has read it already)."""

    def one(path: Path) -> np.ndarray | None:
        try:
            return photo_print(path)
        except ImageError:
            return None

    prints = []
    with ThreadPoolExecutor(max_workers=workers or min(8, worker_limit())) as pool:
        for done, found in enumerate(pool.map(one, paths), 1):
            prints.append(found)
            if on_progress:
                on_progress(done, len(paths))
    return prints


def near_copies(prints: Sequence[np.ndarray | None], levels: float = NEAR_COPY_LEVELS,
                block: int = 1024) -> list[NearCopy]:
    """Every pair of prints whose values differ by at most `levels`, sorted by `(first, second)`.

    Within `levels` everywhere, a pair's 4x4 means are within `levels` too, so their root mean square difference is:
    pairs are screened by that, a matrix product of the 48 means `block` rows at a time (4 bytes times `block` times
    the photos: 41 MB for 10,000), and only the few left are compared value by value (bench/near_copies.py has the
    cost).
    """
    kept = [i for i, p in enumerate(prints) if p is not None]
    if len(kept) < 2:
        return []
    full = np.stack([np.asarray(prints[i], dtype=np.float32) for i in kept]) - 128.0
    side = PRINT_SIDE // 2
    coarse = full.reshape(len(kept), side, 2, side, 2, 3).mean(axis=(2, 4)).reshape(len(kept), -1)
    squares = (coarse**2).sum(axis=1)
    bound = levels**2 * coarse.shape[1] + 1.0  # a pair within `levels`, and float32's rounding of the sums
    found = []
    for start in range(0, len(kept), block):
        rows = coarse[start : start + block] @ coarse[start:].T
        rows *= -2.0
        rows += squares[start : start + block, None]
        rows += squares[None, start:]
        for r, c in zip(*np.nonzero(rows <= bound)):
            i, j = start + int(r), start + int(c)
            if j > i and (largest := round(float(np.abs(full[i] - full[j]).max()), 2)) <= levels:
                found.append(NearCopy(kept[i], kept[j], largest))
    return sorted(found, key=lambda n: (n.first, n.second))


def copy_groups(n: int, pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The indices `0..n-1` joined into groups through `pairs` (a copy of a copy is one photo too), each sorted, in the
    order of their first index; an index in no pair is a group of its own."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def near_copy_note(first: str, levels: float, done: str) -> str:
    """What an importer says of a photo whose pixels are those of `first`, which it `done` ('imported', 'converted')
    too: both are kept, and kept on one side of the split."""
    return (f"its pixels are those of {first} (seen small and upright, no value differs by more than {levels:g} of 255 "
            f"levels): a copy a tool saved again (another JPEG quality, PNG, a smaller size, its EXIF turn written into "
            f"its pixels), or a second shot of one view. Both were {done}, on one side of the split; if they are one "
            f"photo, remove one and {'import' if done == 'imported' else 'convert'} again, or its boxes count twice")


def near_copy_entries(names: Sequence[str], prints: Sequence[np.ndarray | None],
                      done: str) -> tuple[list[list[int]], list[dict[str, str]]]:
    """For photos an importer kept (`names` as its errors.jsonl names them, and their prints): the groups of
    near-copies to keep on one side of the split (`copy_groups`), and an errors.jsonl entry for each photo that is a
    near-copy of an earlier one, naming that one (`near_copy_of`). The pixels differ, so which copy to keep, if not
    both, is the user's call: none is folded."""
    pairs = near_copies(prints)
    entries, named = [], set()
    for pair in pairs:
        if pair.second not in named:  # one entry a photo: a third copy names the first, not each before it
            named.add(pair.second)
            entries.append({"file": names[pair.second], "near_copy_of": names[pair.first],
                            "reason": near_copy_note(names[pair.first], pair.levels, done)})
    return [g for g in copy_groups(len(names), [(p.first, p.second) for p in pairs]) if len(g) > 1], entries
