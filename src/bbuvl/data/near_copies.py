"""Near-copies: one photo saved again by a tool (another JPEG quality, PNG, a phone's smaller size, its EXIF turn
written into the pixels, mirrored or turned, made greyscale, darker or lower in contrast), found by its pixels.

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

A copy mirrored or turned in its pixels (a flip for augmentation, a turn a viewer saved with no EXIF to undo it) is the
same scene and leaks across a split the same way: two prints are compared in each of the 8 ways one can lie on the
other (`TURNS`), which on an 8x8 thumbnail is a reordering of its values. Turned, they must be closer
(`TURNED_LEVELS`, 5): copies in the 7 other turns differed by at most 4 levels (JPEG at quality 30, half size, WebP;
30 photos of each scene), and distinct photos by at least 14 in 3,000 synthetic ones (600 of each of wide, close-up
and shapes at 640x480, wide at 448x336 and shapes at 224x224) but by 7 in the demo's 1,050 shapes photos (13 as taken):
one shape on a plain background, where another photo's shape sits where a turn puts it.

A copy changed in tone keeps its pixels' pattern, not their levels; two photos the comparisons above left in two groups
are compared twice more, as taken only. Made greyscale (Pillow's "L" is YCbCr's Y), a copy keeps its original's
luminance: a print whose colour is grey everywhere (`GREY_CHROMA`) is compared with the luminance of the prints in
colour, within `GREY_LEVELS` (4): greyscale copies differed by at most 2, a distinct photo's luminance from another's
by at least 8 (the demo's shapes, one shape on a plain background, where colour told them apart; 16-40 on the other
scenes). Made darker or lower in contrast (an edit, an auto-enhance), a copy's luminance is its original's scaled and
shifted, and its colour about grey scaled with it: each print, its luminance less its mean and both divided by its
luminance's standard deviation, is compared in levels at the larger of the two deviations, within `TONE_LEVELS` (7).
Darker (80 and 90 %) and lower-contrast (80 %) copies differed by at most 3.3, distinct photos by at least 11.85 (the
demo's shapes; 27.4 to 47 on the others). Both only where the luminance spans enough levels (`TONE_DETAIL`,
`TONE_LEAST`): divided by a small deviation, a re-encode's noise grows.

Not found, measured and left: a copy made brighter or higher in contrast where pixels clip at white (matched, up to 26
levels, beyond distinct photos' 11.85; such copies are found where nothing clipped: 128 of 138 at 110 %), a copy
changed in tone and also turned, and a cropped one: prints of 25 sub-windows of the larger photo (2 to 10 % off an
edge or about the centre, in steps of 2 %) found crops on that grid within 5 levels, but a crop 1 % off it differed by
up to 18 (a 3 % crop of the wide scene), and distinct photos came within 7 of a sub-window of another (the demo's
shapes).

Measured (bench/near_copies.py; docs/data_names.md, "Near-copies"): copies differ by at most 3 levels (JPEG at quality
60 and 30, PNG, WebP, half and quarter size, an EXIF turn written into the pixels), distinct photos of the synthetic
scenes by at least 13 (every pair of 2,866 photos: wide, close-up and shapes, at 640x480, 448x336 and 224x224).
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from bbuvl.data.images import ImageError, check_read_cost, exif_orientation, open_image, to_rgb, upright
from bbuvl.data.read_cost import read_cost
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
# A copy found only turned or mirrored needs its prints closer: each photo meets 7 more of another's, and a scene of
# one shape on a plain background has a distinct photo with that shape where a turn puts it. On the demo's 1,050 shapes
# photos a distinct pair came within 7 levels in another turn (13 as taken); copies turned or mirrored and saved again
# (JPEG at quality 30, half size, WebP) within 4.
TURNED_LEVELS = 5.0
# Between darker (80, 90 %) and lower-contrast (80 %) copies matched in tone (at most 3.3 levels) and distinct photos
# (at least 11.85, the demo's 1,050 shapes photos): bench/near_copies.py. A copy made brighter or given more contrast
# is found only where no pixel clipped at white: such copies differed by up to 26.
TONE_LEVELS = 7.0
# Divided by a small deviation, a re-encode's noise grows: compared down to spans of 16 levels, darker copies of the
# demo's shapes photos differed by up to 7.6 (from 24, 4.7). A greyscale photo is compared where its luminance spans
# `TONE_DETAIL`; two photos matched in tone where one spans that and the other three quarters of it (`TONE_LEAST`: a copy
# 80 % as bright of a photo spanning 32 levels spans 25.6).
TONE_DETAIL = 2 * DETAIL_LEVELS
TONE_LEAST = 0.75 * TONE_DETAIL
# Between greyscale copies' luminance (at most 2 levels off their originals') and a distinct photo's (at least 8, the
# demo's shapes photos): a print whose Cb and Cr all lie within `GREY_CHROMA` of grey (128) is compared so. A JPEG of
# grey pixels kept its colour within 0 of grey in the bench.
GREY_LEVELS = 4.0
GREY_CHROMA = 2.0


# What a near-copy may be, as messages say it.
COPY_KINDS = ("a copy a tool saved again (another JPEG quality, PNG, a smaller size, its EXIF turn written into its "
              "pixels, mirrored or turned in its pixels, made greyscale, darker or lower in contrast)")
# The 8 ways a print can lie on another (the turns and mirror images of a square), each as words saying what the later
# photo is of the earlier, and as the order of the later's print values that shows it as the earlier; 0 is as taken. Turned a
# quarter, a 640x480 photo is 480x640 and its eighths of each side are still its eighths, so its print is turned too.
TURNS: tuple[str, ...] = ("", "turned 90 degrees clockwise", "turned 180 degrees", "turned 90 degrees anticlockwise",
                          "mirrored left to right", "mirrored across its rising diagonal", "mirrored top to bottom",
                          "mirrored across its falling diagonal")


def _turn_orders(side: int) -> np.ndarray:
    """`[8, side * side * 3]`: row `t` reorders a flattened `side x side x 3` print of a photo that is another
    `TURNS[t]` into that other's print (each turn the inverse of the words; a mirror is its own)."""
    index = np.arange(side * side * 3).reshape(side, side, 3)
    turned = [np.rot90(index, k, axes=(0, 1)) for k in range(4)]  # rot90 turns the array's picture anticlockwise
    return np.stack([t.ravel() for t in turned + [t[:, ::-1] for t in turned]])


_TURN_ORDERS, _MEAN_TURN_ORDERS = _turn_orders(PRINT_SIDE), _turn_orders(PRINT_SIDE // 2)
# The 4x4 means (2x2 values each) fall into three sets that every turn maps onto themselves: the corners, the edges and
# the middle. Sorted within each set, the means are the same however the photo lies, and sorting moves no value further
# from its counterpart than the largest difference before it: a pair within `levels` in some turn is within `levels`
# here, so the screen keeps it.
_CORNERS, _EDGES, _MIDDLE = [0, 3, 12, 15], [1, 2, 4, 7, 8, 11, 13, 14], [5, 6, 9, 10]


@dataclass(frozen=True)
class NearCopy:
    """Two photos (indices into the list given, `first < second`) whose pixels are one photo's, the largest
    difference of their prints in grey levels, and how the second lies on the first (an index into `TURNS`; 0 as
    taken)."""

    first: int
    second: int
    levels: float
    turn: int = 0
    tone: str = ""  # a change of tone, in words ("made greyscale", "made darker"): `levels` then compares them matched

    @property
    def how(self) -> str:
        """What the second photo is of the first, in words: '' when as taken, else e.g. 'mirrored left to right' or
        'made greyscale'."""
        return TURNS[self.turn] or self.tone


def photo_print(path: str | Path) -> np.ndarray | None:
    """The print (`[PRINT_SIDE, PRINT_SIDE, 3]` YCbCr float32, 0-255) of a photo file's upright pixels; None for a photo
    without detail. ImageError naming the file when it cannot be decoded."""
    with open_image(path, decode=False) as im:
        try:
            stored, cost = im.size, read_cost(im)
            if im.format in ("JPEG", "MPO"):
                im.draft("YCbCr", (PRINT_SIDE * DRAFT_PER_VALUE,) * 2)
            # Refused as `load_image` refuses it: a progressive JPEG's decoder holds its whole size at any scale
            check_read_cost(im, Path(path), cost, stored)
            try:
                orientation = exif_orientation(im)  # a PNG's EXIF may follow its pixels: reading it decodes them
            except ValueError:  # a tag that is no number: `data check` names it; the pixels are still the photo's
                orientation = 1
            # As every reader takes it (images.to_rgb): Pillow's own convert clips a 16-bit PNG almost white.
            return print_of(upright(to_rgb(im), orientation))
        except ImageError:
            raise
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


def near_copies(prints: Sequence[np.ndarray | None], levels: float = NEAR_COPY_LEVELS, block: int = 1024,
                turned_levels: float = TURNED_LEVELS, tone_levels: float = TONE_LEVELS,
                grey_levels: float = GREY_LEVELS) -> list[NearCopy]:
    """Each photo's earliest near-copy (the pair of it and the first photo before it whose print differs by at most
    `levels` everywhere as taken, or `turned_levels` turned or mirrored: `TURNS`), the other pairs that join two
    photos' groups, and then the pairs that join two groups as a copy made greyscale (`grey_levels`), darker or lower
    in contrast (`tone_levels`; 0 leaves either out), sorted by `(first, second)`: enough for `copy_groups` to find
    every group, and fewer than three pairs a photo in all. All pairs were asked for before: a fixed camera's 5,000 shots of one
    view are 12.5 million of them.

    Within `levels` everywhere, a pair's 4x4 means are within `levels` too, and so are those means sorted within the
    sets no turn mixes (`_CORNERS`, `_EDGES`, `_MIDDLE`), so their root mean square difference is: pairs are screened
    by that, the same however each photo lies, a matrix product of the 48 sorted means `block` rows at a time (4 bytes
    times `block` times the photos: 41 MB for 10,000), and only those left are compared value by value, as taken and
    then in the 7 other turns (bench/near_copies.py has the cost).
    """
    kept = [i for i, p in enumerate(prints) if p is not None]
    n = len(kept)
    if n < 2:
        return []
    full = np.stack([np.asarray(prints[i], dtype=np.float32).ravel() for i in kept]) - 128.0
    side = PRINT_SIDE // 2
    means = full.reshape(n, side, 2, side, 2, 3).mean(axis=(2, 4)).reshape(n, side * side, 3)
    coarse = np.concatenate([np.sort(means[:, cells], axis=1) for cells in (_CORNERS, _EDGES, _MIDDLE)],
                            axis=1).reshape(n, -1)
    means = means.reshape(n, -1)
    squares = (coarse**2).sum(axis=1)
    bound = levels**2 * coarse.shape[1] + 1.0  # a pair within `levels`, and float32's rounding of the sums
    parent = np.arange(n)
    found: dict[tuple[int, int], tuple[float, int, str]] = {}  # (first, second) -> the largest difference, the turn, ""
    has_earliest: set[int] = set()
    settled = np.zeros(n, dtype=bool)  # the photos whose earliest near-copy is found
    start, size = 0, min(block, 64)
    while start < n:
        # Blocks grow from 64 rows to `block`: a large group (a fixed camera's shots) is joined in the first rows, and
        # its pairs in later rows are left out before they are compared.
        stop, size = start + size, min(2 * size, block)
        rows = coarse[start:stop] @ coarse[start:].T
        rows *= -2.0
        rows += squares[start:stop, None]
        rows += squares[None, start:]
        first, second = np.nonzero(rows <= bound)
        first, second = first + start, second + start
        first, second = first[second > first], second[second > first]
        # A pair of one group whose later photo's earliest copy an earlier block found adds nothing: left out before
        # its values are compared (in every turn for a pair not alike as taken, a view and its mirror image's shots).
        roots = _roots(parent)
        needed = ~(settled[second] & (roots[first] == roots[second]))
        first, second = first[needed], second[needed]
        largest, turn = _closest_turn(full, means, first, second, min(turned_levels, levels))
        near = largest <= levels
        first, second, largest, turn = first[near], second[near], largest[near], turn[near]
        # Rows come in order, so a photo's first pair in a stable sort by `second` is with its earliest near-copy, and
        # the first block to find a photo finds it.
        order = np.argsort(second, kind="stable")
        lead = order[np.r_[True, second[order][1:] != second[order][:-1]]] if len(order) else order
        for k in lead.tolist():
            if int(second[k]) not in has_earliest:
                has_earliest.add(int(second[k]))
                settled[int(second[k])] = True
                found[(int(first[k]), int(second[k]))] = (round(float(largest[k]), 2), int(turn[k]), "")
        for row in np.split(np.arange(len(first)), np.flatnonzero(np.diff(first)) + 1):
            if len(row):
                _join(parent, int(first[row[0]]), second[row], largest[row], turn[row], found)
        start = stop
    for a, b, largest_tone, words in _tone_copies(full, parent, tone_levels, grey_levels, block):
        found.setdefault((a, b), (largest_tone, 0, words))
    return [NearCopy(kept[a], kept[b], *found[(a, b)]) for a, b in sorted(found)]


def _roots(parent: np.ndarray) -> np.ndarray:
    """Each photo's group in `parent` (a forest whose roots are the groups' least photos)."""
    roots = parent.copy()
    while not np.array_equal(parent[roots], roots):
        roots = parent[roots]
    return roots


def _tone_copies(full: np.ndarray, parent: np.ndarray, tone_levels: float, grey_levels: float,
                 block: int) -> list[tuple[int, int, float, str]]:
    """The pairs of rows of `full` (flattened prints less 128) in two groups of `parent` that one photo made greyscale
    (`GREY_LEVELS`) or changed in tone (`TONE_LEVELS`) joins, each as (first, second, the largest difference, what the
    second is of the first in words), joining their groups in `parent` (photos in one group already are not compared:
    a fixed camera's shots)."""
    luma = full[:, 0::3] + 128.0
    chroma = np.concatenate([full[:, 1::3], full[:, 2::3]], axis=1)
    span = luma.max(axis=1) - luma.min(axis=1)
    detailed = span >= TONE_DETAIL
    roots = _roots(parent)
    found: list[tuple[int, int, float, str]] = []
    grey = np.abs(chroma).max(axis=1) <= GREY_CHROMA
    if grey_levels > 0:
        greys, colours = np.flatnonzero(grey & detailed), np.flatnonzero(~grey)
        ones = np.ones(len(full), dtype=np.float32)
        for g, c in zip(*_screen(_means(luma[greys]), _means(luma[colours]), ones[greys], ones[colours], grey_levels,
                                 roots[greys], roots[colours], block)):
            a, b = greys[g], colours[c]
            largest = float(np.abs(luma[a] - luma[b]).max())
            if largest <= grey_levels:
                found.append((int(min(a, b)), int(max(a, b)), largest, "made greyscale" if b < a else "in colour"))
    if tone_levels > 0:
        photos = np.flatnonzero((span >= TONE_LEAST) & ~grey)
        spread = luma[photos].std(axis=1)
        mean = luma[photos].mean(axis=1)
        matched = np.concatenate([luma[photos] - mean[:, None], chroma[photos]], axis=1) / spread[:, None]
        coarse = _means(matched)
        for i, j in zip(*_screen(coarse, coarse, spread, spread, tone_levels, roots[photos], roots[photos], block,
                                 upper=True)):
            largest = float(np.abs(matched[i] - matched[j]).max() * max(spread[i], spread[j]))
            if largest <= tone_levels and max(span[photos[i]], span[photos[j]]) >= TONE_DETAIL:
                found.append((int(photos[i]), int(photos[j]), largest, _tone_words(mean[i], spread[i], mean[j],
                                                                                  spread[j])))
    joined = []
    for a, b, largest, words in sorted(found):
        if _union(parent, a, b):  # a pair of two groups, not one a pair before it joined already
            joined.append((int(a), int(b), round(largest, 2), words))
    return joined


def _means(values: np.ndarray) -> np.ndarray:
    """`[n, channels * 16]`: the 4x4 means of rows of 8x8 values, channel after channel (`[n, channels * 64]`), which
    differ no more than the values they average: the screen compares them, a quarter of the work."""
    n, side = len(values), PRINT_SIDE // 2
    channels = values.shape[1] // PRINT_SIDE**2
    return values.reshape(n, channels, side, 2, side, 2).mean(axis=(3, 5)).reshape(n, channels * side * side)


def _screen(a: np.ndarray, b: np.ndarray, scale_a: np.ndarray, scale_b: np.ndarray, levels: float,
            roots_a: np.ndarray, roots_b: np.ndarray, block: int, upper: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of a row of `a` and a row of `b` (`[n, values]`, in two groups by `roots_a`, `roots_b`; with `upper`,
    `b` is `a` and each pair once) that may differ by at most `levels` everywhere once scaled by the larger of their
    `scale`s: their sum of squared differences, times both scales, is at most `levels` squared times the values (a
    matrix product, `block` rows at a time; the larger scale squared is at least the product)."""
    bound = levels**2 * a.shape[1] * (1 + 1e-3) + 1.0  # and float32's rounding of the sums
    squares_a, squares_b = (a**2).sum(axis=1), (b**2).sum(axis=1)
    firsts, seconds = [], []
    for start in range(0, len(a), block):
        stop, offset = min(start + block, len(a)), start if upper else 0
        rows = a[start:stop] @ b[offset:].T
        rows *= -2.0
        rows += squares_a[start:stop, None]
        rows += squares_b[None, offset:]
        rows *= scale_a[start:stop, None]
        rows *= scale_b[None, offset:]
        close = rows <= bound
        if np.count_nonzero(close) > len(close):  # a group's many photos (a fixed camera's): left out before listed
            close &= roots_a[start:stop, None] != roots_b[None, offset:]
        first, second = np.nonzero(close)
        apart = roots_a[first + start] != roots_b[second + offset]
        firsts.append(first[apart] + start)
        seconds.append(second[apart] + offset)
    return (np.concatenate(firsts), np.concatenate(seconds)) if firsts else (np.empty(0, int), np.empty(0, int))


_TONE_WORDS = ("made brighter", "made darker", "with more contrast", "with less contrast")


def _tone_words(mean: float, spread: float, other_mean: float, other_spread: float) -> str:
    """What a photo of luminance `other_mean` and `other_spread` is of one of `mean` and `spread`: a brightness change
    scales both, a contrast change only the spread (Pillow's ImageEnhance, as phones' edits)."""
    brightness, contrast = other_mean / mean, other_spread / spread
    if abs(brightness - 1) >= abs(brightness - contrast):
        return _TONE_WORDS[0 if brightness > 1 else 1]
    return _TONE_WORDS[2 if contrast > 1 else 3]


def _closest_turn(full: np.ndarray, means: np.ndarray, first: np.ndarray, second: np.ndarray,
                  turned_levels: float) -> tuple[np.ndarray, np.ndarray]:
    """For each pair of rows of `full` (flattened prints; `means` their 4x4 means), the largest difference of their
    values as taken, or in the turn of the second closest to the first where that is closer and within `turned_levels`,
    and which (an index into `TURNS`; as taken on a tie, so that a copy of a photo that looks the same mirrored is a
    plain copy). A turn is compared in full only where its 4x4 means, which differ no more than the values they
    average, could beat both: few pairs."""
    largest = np.concatenate([np.abs(full[first[k : k + 65536]] - full[second[k : k + 65536]]).max(axis=1)
                              for k in range(0, len(first), 65536)] or [np.empty(0, np.float32)])
    turn = np.zeros(len(first), dtype=np.int64)
    for k in range(0, len(first), 8192):
        at = np.arange(k, min(k + 8192, len(first)))
        coarse = np.abs(means[second[at]][:, _MEAN_TURN_ORDERS[1:]] - means[first[at]][:, None, :]).max(axis=2)
        pair, other = np.nonzero((coarse < largest[at, None]) & (coarse <= turned_levels))  # [pairs, 7 turns] -> worth it
        each = np.full(coarse.shape, np.inf, dtype=np.float32)
        each[pair, other] = np.abs(full[second[at[pair]]][np.arange(len(pair))[:, None], _TURN_ORDERS[other + 1]]
                                   - full[first[at[pair]]]).max(axis=1)
        best = each.argmin(axis=1)
        closest = each[np.arange(len(at)), best]
        closer = (closest < largest[at]) & (closest <= turned_levels)
        largest[at[closer]], turn[at[closer]] = closest[closer], best[closer] + 1
    return largest, turn


def _join(parent: np.ndarray, photo: int, copies: np.ndarray, levels: np.ndarray, turns: np.ndarray,
          found: dict[tuple[int, int], tuple[float, int, str]]) -> None:
    """Join `photo` and its near-copies' groups in `parent` (a forest of the photos, each root its group's least
    photo), adding to `found` a pair for each group joined to the photo's."""
    members = np.concatenate(([photo], copies))
    roots = members
    while not np.array_equal(parent[roots], roots):
        roots = parent[roots]
    groups, at = np.unique(roots, return_index=True)
    for root, k in zip(groups.tolist(), at.tolist()):
        if root != roots[0]:
            found.setdefault((photo, int(members[k])), (round(float(levels[k - 1]), 2), int(turns[k - 1]), ""))
    parent[groups] = groups[0]
    parent[members] = groups[0]  # their paths, short for the next rows


def _root(parent: MutableSequence[int] | np.ndarray, i: int) -> int:
    """`i`'s group in `parent` (a forest whose roots are the groups' least members), halving its path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = int(parent[i])
    return i


def _union(parent: MutableSequence[int] | np.ndarray, a: int, b: int) -> bool:
    """Join `a`'s and `b`'s groups in `parent`, the lesser root staying the root; whether they were two."""
    ra, rb = _root(parent, a), _root(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)
    return ra != rb


def copy_groups(n: int, pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The indices `0..n-1` joined into groups through `pairs` (a copy of a copy is one photo too), each sorted, in the
    order of their first index; an index in no pair is a group of its own."""
    parent = list(range(n))
    for a, b in pairs:
        _union(parent, a, b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(_root(parent, i), []).append(i)
    return list(groups.values())


def how_alike(levels: float, how: str = "") -> str:
    """How two near-copies' prints were compared and how close they came (`NearCopy.levels` and `.how`), as messages
    say it: in luminance for a greyscale copy, matched in brightness and contrast for one changed in tone, where
    `levels` is measured after that, not between the values as taken."""
    seen = ("seen small and upright" + (", in luminance" if how in ("made greyscale", "in colour") else
                                        ", matched in brightness and contrast" if how in _TONE_WORDS else ""))
    return f"{seen}, no value differs by more than {levels:g} of 255 levels"


def near_copy_note(first: str, levels: float, done: str, how: str = "") -> str:
    """What an importer says of a photo whose pixels are those of `first` (`how` they lie on them: a `TURNS` entry, or
    a change of tone), which it `done` ('imported', 'converted') too: both are kept, and kept on one side of the
    split."""
    return (f"its pixels are those of {first}{' ' + how if how else ''} ({how_alike(levels, how)}): {COPY_KINDS}, or a "
            f"second shot of one view. Both were {done}, on one side of the split; if they are one photo, remove one "
            f"and {'import' if done == 'imported' else 'convert'} again, or its boxes count twice")


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
                            "reason": near_copy_note(names[pair.first], pair.levels, done, pair.how)})
    return [g for g in copy_groups(len(names), [(p.first, p.second) for p in pairs]) if len(g) > 1], entries
