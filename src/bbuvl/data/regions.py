"""Parts of a photo: the tile grid, and what a window cut from a photo keeps of its boxes.

The visibility rule is stated once here and used by every crop the project makes: the close-up framing of the
synthetic scene, `bbuvl data tile`, random crops in training, and tiles at inference (docs/tiles.md). A box cut by the window is kept
when at least half of it shows, or when what shows still covers a tenth of the window (a BBU or a cable run
through the frame), and at least two pixels a side show (a box wholly inside needs one, as `data check` does); of two boxes that clipping made nearly the same (IoU > DUPLICATE_IOU, e.g. a BBU and the
cabinet space both filling the window), the more visible one stays. Two boxes the window shows as the whole photo
does, or that were that close before it cut them, both stay: the whole photo teaches both. Parts cut below those
thresholds stay unlabelled, as annotators leave them.
"""

from __future__ import annotations

import math
import random
import re
from typing import Sequence

import numpy as np

from bbuvl.data.boxes import box_iou
from bbuvl.data.check import DUPLICATE_IOU
from bbuvl.data.coords import box_is_degenerate, clip_box
from bbuvl.data.schema import ImageRecord, ObjectAnn, sort_objects

Size = tuple[int, int]
Region = tuple[int, int, int, int]  # x1, y1, x2, y2 in stored pixels, integers, x2/y2 exclusive

KEEP_VISIBLE = 0.5  # a box cut by the window is kept when this much of it shows ...
KEEP_AREA = 0.1  # ... or when what shows still covers this much of the window
MAX_GRID = 16  # tiles per side: beyond this a photo is better resized than cut into slivers


def _even_spans(total: int, side: int, n: int) -> list[tuple[int, int]]:
    """`n` spans of `side` (at most `total`) along a `total`-pixel axis, their starts evenly spaced from 0 to
    total - side: the first touches one border, the last the other."""
    if n == 1:
        return [(0, side)]
    return [(round(i * (total - side) / (n - 1)), round(i * (total - side) / (n - 1)) + side) for i in range(n)]


def grid_regions(size: Size, cols: int, rows: int, overlap: int) -> list[Region]:
    """`cols` x `rows` equal tiles covering a `size` photo, neighbours sharing `overlap` pixels, row by row."""
    if not (1 <= cols <= MAX_GRID and 1 <= rows <= MAX_GRID):
        raise ValueError(f"a tile grid has 1..{MAX_GRID} tiles per side, got {cols}x{rows}")
    if overlap < 0:
        raise ValueError(f"tile overlap must be >= 0 pixels, got {overlap}")
    w, h = size

    def spans(total: int, n: int) -> list[tuple[int, int]]:
        return _even_spans(total, total if n == 1 else min(total, math.ceil((total + (n - 1) * overlap) / n)), n)

    return [(x1, y1, x2, y2) for y1, y2 in spans(h, rows) for x1, x2 in spans(w, cols)]


def strided_regions(size: Size, tile: Size, stride: float, least: tuple[int, int] = (1, 1)) -> list[Region]:
    """Tiles of `tile` (width, height) covering a `size` photo, each starting at most `stride` of a tile's side after
    the one before it along each axis (at least `least` columns and rows, at most MAX_GRID), row by row.

    A grid cut for a scale shares a few pixels between neighbours: a part wider than that strip is whole in no tile
    when it crosses it. With a stride, a part up to (1 - stride) of a tile is whole in some tile wherever it lies,
    and in two where neighbours share it (docs/tiles.md, "Tiles a stride apart").
    """
    if not 0 < stride <= 1:
        raise ValueError(f"a tile stride is a share of the tile's side in (0, 1], got {stride}")

    def spans(total: int, side: int, least: int) -> list[tuple[int, int]]:
        side = min(total, side)
        n = 1 if side >= total else math.ceil((total - side) / (stride * side)) + 1
        return _even_spans(total, side, min(MAX_GRID, max(n, least)))

    w, h = size
    return [(x1, y1, x2, y2) for y1, y2 in spans(h, tile[1], least[1]) for x1, x2 in spans(w, tile[0], least[0])]


def parse_grid(text: str) -> tuple[int, int]:
    """`"3x2"` -> `(3, 2)` columns and rows."""
    # ASCII digits only: int() alone also took "1_0" as 10, "+2", and digits of other scripts
    if (match := re.fullmatch(r"\s*([0-9]+)\s*x\s*([0-9]+)\s*", text.lower())) is None:
        raise ValueError(f"a tile grid looks like COLSxROWS (e.g. 2x2), got '{text}'")
    cols, rows = int(match[1]), int(match[2])
    if not (1 <= cols <= MAX_GRID and 1 <= rows <= MAX_GRID):
        raise ValueError(f"a tile grid has 1..{MAX_GRID} tiles per side, got '{text}'")
    return cols, rows


def tile_side_overlap(size: Size, grid: tuple[int, int], overlap: float) -> int:
    """Overlap in pixels for a share `overlap` of the grid's shorter tile side."""
    return round(overlap * min(size[0] / grid[0], size[1] / grid[1]))


def window_objects(objects: Sequence[tuple[Sequence[float], str]], origin: tuple[float, float], size: Size,
                   scale: float = 1.0) -> list[ObjectAnn]:
    """Boxes seen through a `size` window at `origin`: moved, divided by `scale`, clipped, and kept by the
    visibility rule above; of two that clipping made (nearly) the same box, the more visible one stays."""
    w, h = size
    seen: list[tuple[float, list[float], list[float], str]] = []  # share shown, clipped box, box as given, label
    for box, label in objects:
        b = [(box[0] - origin[0]) / scale, (box[1] - origin[1]) / scale, (box[2] - origin[0]) / scale, (box[3] - origin[1]) / scale]
        c = [round(v, 1) for v in clip_box(b, size)]
        shown = max(0.0, c[2] - c[0]) * max(0.0, c[3] - c[1])
        # A box wholly inside is the part the whole photo holds, kept as `data check` keeps it (a pixel a side): at
        # two, a 1.5-px screw wholly inside a tile was dropped and the tile taught "nothing here" over it. A box the
        # window cuts needs two pixels shown: a thinner strip is the edge of a part, not a part (docs/tiles.md).
        inside = c == [round(v, 1) for v in b]
        if box_is_degenerate(c, min_side=1 if inside else 2) or shown == 0:
            continue
        visible = shown / ((b[2] - b[0]) * (b[3] - b[1]))
        if visible >= KEEP_VISIBLE or shown >= KEEP_AREA * w * h:
            seen.append((visible, c, b, label))
    return sort_objects(_unlike(sorted(seen, key=lambda t: -t[0])))


def _unlike(seen: list[tuple[float, list[float], list[float], str]]) -> list[ObjectAnn]:
    """The boxes of `seen` (most visible first) but each one clipping made nearly the same as one kept before it.

    Only a pair the window changed: two near-identical boxes of different labels wholly inside it (a BBU and the
    cabinet space it fills, IoU 0.98) are both in the whole photo, which `data check` accepts and which teaches
    both; dropping one taught "nothing here" over it in every crop and tile that held them whole.
    """
    kept: list[ObjectAnn] = []
    # Each against every box kept so far in one call: a box at a time, a tile of 1,156 screws took 19 s
    shown, given, cut = np.empty((len(seen), 4)), np.empty((len(seen), 4)), np.zeros(len(seen), dtype=bool)
    for _, c, b, label in seen:
        n, clipped = len(kept), c != [round(v, 1) for v in b]
        near = np.flatnonzero(box_iou(c, shown[:n]) > DUPLICATE_IOU) if n else np.empty(0, dtype=int)
        if near.size and bool(((clipped | cut[near]) & (box_iou(b, given[near]) <= DUPLICATE_IOU)).any()):
            continue
        shown[n], given[n], cut[n] = c, b, clipped
        kept.append(ObjectAnn(bbox_2d=c, desc=label))
    return kept


def random_region(size: Size, rng: random.Random, min_side: float, max_side: float) -> Region:
    """A window of the photo's aspect, its side a uniform share in [min_side, max_side] of the photo's, anywhere in it."""
    share = rng.uniform(min_side, max_side)
    w, h = max(1, round(size[0] * share)), max(1, round(size[1] * share))
    x, y = rng.randint(0, size[0] - w), rng.randint(0, size[1] - h)
    return (x, y, x + w, y + h)


def magnified_record(record: ImageRecord, region: Region, size: Size) -> ImageRecord:
    """The record of `region` cut from `record`'s photo and resized to `size`: the boxes the visibility rule keeps,
    in the resized crop's pixels, and its magnification over the photo as taken."""
    x1, y1, x2, y2 = region
    rw, rh = x2 - x1, y2 - y1
    sx, sy = size[0] / rw, size[1] / rh
    kept = window_objects([(o.bbox_2d, o.desc) for o in record.objects], (x1, y1), (rw, rh))
    objects = [o.model_copy(update={"bbox_2d": [round(o.bbox_2d[0] * sx, 1), round(o.bbox_2d[1] * sy, 1),
                                                round(o.bbox_2d[2] * sx, 1), round(o.bbox_2d[3] * sy, 1)]})
               for o in kept]
    return ImageRecord(images=record.images, width=size[0], height=size[1], objects=objects, id=record.id,
                       source=record.source, magnified=(record.magnified or 1.0) * math.sqrt(sx * sy))


def mirrored_record(record: ImageRecord) -> ImageRecord:
    """The record of `record`'s photo mirrored left to right: every box's x reflected about the photo's middle."""
    width = record.size[0]
    objects = [o.model_copy(update={"bbox_2d": [round(width - o.bbox_2d[2], 1), o.bbox_2d[1],
                                                round(width - o.bbox_2d[0], 1), o.bbox_2d[3]]})
               for o in record.objects]
    return record.model_copy(update={"objects": objects})
