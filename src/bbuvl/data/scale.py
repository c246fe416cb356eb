"""The scale a run trained at: frame pixels per pixel of the photos as taken, saved with its checkpoint.

A model that learned its screws at one scale finds them at that scale. Tiles' `auto` grid (docs/tiles.md) cuts a
new photo so that each tile shows it at the scale the checkpoint trained at; this module measures that scale over
the training photos, where a photo written by `bbuvl data tile --zoom` counts its magnification
(`ImageRecord.magnified`), and writes it beside the checkpoint's coordinate contract.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from bbuvl.atomic import write_text_atomic
from bbuvl.data.coords import CoordinateContract
from bbuvl.data.jsonfile import parse_json_read, read_json
from bbuvl.data.labels import label_at_level
from bbuvl.data.schema import ImageRecord

SCALE_FILE = "training_scale.json"
# The scale `tiles: auto` uses instead, once `bbuvl choose-tiles` chose one on validation photos (infer/tile_scale.py).
TILE_SCALE_FILE = "tile_scale.json"
# Decimals the scales in both files are written with. A scale read back is off the one measured by up to half a unit
# of the last: the median of 320x240 close-ups in a 308x252 frame, 1.0052985, is written 1.0053, which a photo of the
# training photos' own size falls short of. Whoever compares a scale read back allows SCALE_SLACK, one whole unit.
SCALE_DECIMALS = 4
SCALE_SLACK = 10.0 ** -SCALE_DECIMALS


def frame_scale(size: tuple[int, int], contract: CoordinateContract) -> float:
    """Frame pixels per stored pixel of a photo of `size` shown whole in the contract's frame, the mean over both
    sides (the frame keeps the aspect only up to its rounding to whole patches)."""
    frame_w, frame_h = contract.model_size(size)
    return math.sqrt(frame_w * frame_h / (size[0] * size[1]))


def photo_scale(record: ImageRecord, contract: CoordinateContract) -> float:
    """Frame pixels per pixel of the original photo, for one stored photo resized to the contract's frame."""
    return frame_scale(record.size, contract) * (record.magnified or 1.0)


PART_QUANTILE = 0.9  # of a category's training box sides: what `part_sides` keeps
CROP_DRAWS = 8  # crop sides per photo standing for the uniform draw (their midpoints): the quantiles move < 1%


def _quantile(weighted: list[tuple[float, float]], q: float) -> float:
    """The `q` quantile of (value, weight) pairs sorted by value: the first value whose cumulative weight reaches it."""
    total = sum(w for _, w in weighted)
    seen = 0.0
    for value, weight in weighted:
        seen += weight
        if seen >= q * total - 1e-12:
            return value
    return weighted[-1][0]


@dataclass(frozen=True)
class TrainingScale:
    """How the training photos were shown: the median scale (what `auto` reuses), its 10th-90th percentile range."""

    median: float
    low: float
    high: float
    photos: int
    # Per category (first label level): the 90th percentile side (square root of the area) of its training boxes in
    # frame pixels, crops not counted: the size it was seen at, at its largest. Mixed framing trains a category at two
    # sizes (screws ~20 px in whole cabinets, ~50 in close-ups) and tiles are for the larger; `auto` tiles zoom
    # until the whole pass's parts come out at this size (docs/tiles.md, "Big parts").
    part_sides: dict[str, float] = field(default_factory=dict)
    # Per category, the 90th percentile of its boxes' longest side in frame pixels: whether a tile can hold the part
    # whole. An air baffle is a long thin plate (448 x 68 px in a close-up: side 175, longest side 448), which a tile
    # cuts into pieces although its side looks small (docs/tiles.md, "Big parts"). Empty in files written before it.
    part_long_sides: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, records: Iterable[ImageRecord], contract: CoordinateContract, crop_p: float = 0.0,
           crop_sides: tuple[float, float] = (1.0, 1.0)) -> "TrainingScale":
        """The scale of `records` (the students a run trains on) in `contract`'s frame; ValueError with none.

        With random crops (`crop_p` of the photos shown through a window whose side is a uniform share in
        `crop_sides` of the photo's, magnified to the photo's frame), a photo counts at each crop's magnification.
        """
        lo, hi = crop_sides
        sides = [lo + (hi - lo) * (k + 0.5) / CROP_DRAWS for k in range(CROP_DRAWS)]
        weighted: list[tuple[float, float]] = []
        parts: dict[str, list[float]] = {}
        longest: dict[str, list[float]] = {}
        photos = 0
        for r in records:
            scale = photo_scale(r, contract)
            photos += 1
            shown = scale / (r.magnified or 1.0)
            for o in r.objects:
                x1, y1, x2, y2 = o.bbox_2d
                category = label_at_level(o.desc, 1)
                parts.setdefault(category, []).append(math.sqrt(max(0.0, (x2 - x1) * (y2 - y1))) * shown)
                longest.setdefault(category, []).append(max(x2 - x1, y2 - y1) * shown)
            weighted.append((scale, 1.0 - crop_p))
            if crop_p > 0:
                weighted += [(scale / side, crop_p / CROP_DRAWS) for side in sides]
        if not photos:
            raise ValueError("no training photos to measure the scale of")
        weighted = sorted(w for w in weighted if w[1] > 0)

        def per_category(sides: dict[str, list[float]]) -> dict[str, float]:
            return {c: round(_quantile(sorted((side, 1.0) for side in v), PART_QUANTILE), 2)
                    for c, v in sorted(sides.items()) if v}

        def rounded(q: float) -> float:
            return round(_quantile(weighted, q), SCALE_DECIMALS)

        return cls(rounded(0.5), rounded(0.1), rounded(0.9), photos, per_category(parts), per_category(longest))

    def save(self, directory: str | Path) -> Path:
        """Write `training_scale.json` into a checkpoint folder."""
        return write_text_atomic(Path(directory) / SCALE_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, taken: Mapping[str, bytes] | None = None) -> "TrainingScale | None":
        """The scale a checkpoint trained at; None for a checkpoint saved without one (older, or a plain model folder).
        `taken`: the folder's files as read earlier, by name (model/identity.py `taken_choices`), read instead."""
        path = Path(directory) / SCALE_FILE
        if taken is not None:
            if SCALE_FILE not in taken:
                return None
            fields = parse_json_read(path, taken[SCALE_FILE])
        elif not path.exists():
            return None
        else:
            fields = read_json(path, "training scale")
        try:
            scale = cls(**fields)
        except TypeError as e:
            raise ValueError(f"{path}: not a training scale ({e})") from e
        sides = (scale.part_sides, scale.part_long_sides)
        if not all(isinstance(d, dict) and all(isinstance(k, str) for k in d) for d in sides):
            raise ValueError(f"{path}: part_sides and part_long_sides must map category names to sides, got {fields}")
        if not all(isinstance(v, (int, float)) and v > 0
                   for v in (scale.median, scale.low, scale.high, *(v for d in sides for v in d.values()))):
            raise ValueError(f"{path}: scales must be positive numbers, got {fields}")
        return scale
