"""What a dataset holds: labels per hierarchy level, objects per photo, image sizes, vision tokens."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any, Sequence

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.labels import SEP, label_at_level
from bbuvl.data.schema import ImageRecord

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


def dataset_stats(records: list[ImageRecord], contract: CoordinateContract,
                  where: Sequence[str] | None = None) -> dict[str, Any]:
    """Counts per label and level, objects per image, image sizes and vision tokens, as plain JSON-able data.

    Every level's counts sum to the number of objects: a label shorter than a level counts as itself there.
    `where` names each record in an error (`file:line`); without it, a record is named by its image.
    """
    labels = Counter(o.desc for r in records for o in r.objects)
    depth = max((len(label.split(SEP)) for label in labels), default=0)
    levels = {}
    for level in range(1, depth + 1):
        at_level: Counter[str] = Counter()
        for label, n in labels.items():
            at_level[label_at_level(label, level)] += n
        levels[str(level)] = _by_count(at_level)

    per_image = [len(r.objects) for r in records]
    histogram = {
        _bin_name(lo, hi): sum(1 for n in per_image if lo <= n and (hi is None or n <= hi)) for lo, hi in OBJECT_BINS
    }

    sizes = Counter(r.size for r in records)
    tokens_of = {}
    for size in sizes:
        try:
            tokens_of[size] = contract.vision_tokens(size)
        except ValueError as e:
            i = next(i for i, r in enumerate(records) if r.size == size)  # the record to fix, as the dataset names it
            named = f"{where[i]}: image {records[i].image}" if where else records[i].image
            raise ValueError(f"{named}: image size {size[0]}x{size[1]}: {e}") from None
    tokens = [tokens_of[r.size] for r in records]
    by_area = sorted(sizes, key=lambda s: (s[0] * s[1], s))

    return {
        "images": len(records),
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
