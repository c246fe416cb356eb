"""What a dataset holds: labels per hierarchy level, objects per photo, image sizes, vision tokens."""

from __future__ import annotations

import statistics
from collections import Counter
from itertools import repeat
from typing import Any, Iterable, Sequence

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.labels import SEP, label_at_level
from bbuvl.data.schema import ImageRecord
from bbuvl.data.text import label_key

# Bin edges follow the teacher density buckets (<=3, <=10) and then widen.
OBJECT_BINS: tuple[tuple[int, int | None], ...] = ((0, 0), (1, 3), (4, 10), (11, 20), (21, 50), (51, None))


def _by_count(counter: Counter[str]) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    """min / mean / median / max of a list (None for an empty one)."""
    if not values:
        return {"min": None, "mean": None, "median": None, "max": None}
    return {"min": min(values), "mean": statistics.fmean(values), "median": statistics.median(values), "max": max(values)}


def _bin_name(lo: int, hi: int | None) -> str:
    return f">{lo - 1}" if hi is None else str(lo) if lo == hi else f"{lo}-{hi}"


def dataset_stats(records: Iterable[ImageRecord], contract: CoordinateContract,
                  where: Iterable[str] | None = None) -> dict[str, Any]:
    """Counts per label and level, objects per image, image sizes and vision tokens, as plain JSON-able data.

    Every level's counts sum to the number of objects: a label shorter than a level counts as itself there.
    `where` names each record in an error (`file:line`); without it, a record is named by its image.
    """
    return named_stats(zip(records, where if where is not None else repeat(None)), contract)


def named_stats(named: Iterable[tuple[ImageRecord, str | None]], contract: CoordinateContract) -> dict[str, Any]:
    """`dataset_stats` of records each with where it was read (None: named by its image), taken as they come and none
    kept: a list of 20,000 photos' records held 280 MB."""
    labels: Counter[str] = Counter()
    per_image: list[int] = []
    sizes: Counter[tuple[int, int]] = Counter()
    tokens_of: dict[tuple[int, int], int] = {}
    tokens: list[int] = []
    for r, at in named:
        labels.update(o.desc for o in r.objects)
        per_image.append(len(r.objects))
        sizes[r.size] += 1
        if r.size not in tokens_of:
            try:
                tokens_of[r.size] = contract.vision_tokens(r.size)
            except ValueError as e:  # named at its first record, the one to fix, as the dataset names it
                named = f"{at}: image {r.image}" if at is not None else r.image
                raise ValueError(f"{named}: image size {r.size[0]}x{r.size[1]}: {e}") from None
        tokens.append(tokens_of[r.size])

    depth = max((label_key(label).count(SEP) + 1 for label in labels), default=0)
    levels = {}
    for level in range(1, depth + 1):
        at_level: Counter[str] = Counter()
        for label, n in labels.items():
            at_level[label_at_level(label, level)] += n
        levels[str(level)] = _by_count(at_level)

    histogram = {
        _bin_name(lo, hi): sum(1 for n in per_image if lo <= n and (hi is None or n <= hi)) for lo, hi in OBJECT_BINS
    }

    by_area = sorted(sizes, key=lambda s: (s[0] * s[1], s))

    return {
        "images": len(per_image),
        "objects": sum(per_image),
        "labels": _by_count(labels),
        "levels": levels,
        "objects_per_image": {**_summary(per_image), "histogram": histogram},
        "image_sizes": {
            "distinct": len(sizes),
            "min": list(by_area[0]) if by_area else None,
            "max": list(by_area[-1]) if by_area else None,
            "counts": {f"{w}x{h}": n for (w, h), n in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))},
        },
        "vision_tokens": {
            **_summary(tokens),
            "total": sum(tokens),
            "min_pixels": contract.min_pixels,
            "max_pixels": contract.max_pixels,
        },
    }
