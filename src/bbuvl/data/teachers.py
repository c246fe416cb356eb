"""Coverage-greedy choice of teacher photos (the demonstrations shown before a student photo)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from bbuvl.data.input_paths import NOTHING_THERE, file_kind, name_problem, spelling_note
from bbuvl.data.library_outputs import holding_outputs
from bbuvl.data.near_copies import copy_groups, near_copies, photo_prints
from bbuvl.data.relocate import relocate_record
from bbuvl.data.schema import (DatasetError, ImageRecord, Sample, once_each, read_lines, require_photos,
                               resolve_image, write_dataset)
from bbuvl.paths import real_path


@dataclass(frozen=True)
class Coverage:
    """What one photo contributes to a teacher pool."""

    labels: frozenset[str]
    density: int  # 0: <=3 objects, 1: <=10, 2: more
    spatial: int  # 3x3 grid cell of the mean box centre, -1 when empty
    sizes: frozenset[int]  # 0: <5% of the image, 1: <20%, 2: larger


def coverage(record: ImageRecord) -> Coverage:
    """The coverage features of a photo (labels, density, mean-centre cell, box-size buckets)."""
    objs = record.objects
    n = len(objs)
    density = 0 if n <= 3 else 1 if n <= 10 else 2
    spatial, sizes = -1, set()
    if n:
        W, H = record.width, record.height
        cx = sum((o.bbox_2d[0] + o.bbox_2d[2]) / 2 for o in objs) / n / W
        cy = sum((o.bbox_2d[1] + o.bbox_2d[3]) / 2 for o in objs) / n / H
        spatial = min(int(cy * 3), 2) * 3 + min(int(cx * 3), 2)
        for o in objs:
            frac = (o.bbox_2d[2] - o.bbox_2d[0]) * (o.bbox_2d[3] - o.bbox_2d[1]) / (W * H)
            sizes.add(0 if frac < 0.05 else 1 if frac < 0.2 else 2)
    return Coverage(frozenset(o.desc for o in objs), density, spatial, frozenset(sizes))


def select_teachers(records: list[ImageRecord], k: int = 10, seed: int = 42,
                    together: Sequence[Sequence[int]] = ()) -> list[int]:
    """Indices of `k` photos chosen greedily: new labels first, then new density, spatial and size buckets; at most one
    of each group of indices in `together` (near-copies of one photo).

    Ties (and the fill once nothing new is left) are broken by a seeded shuffle, so the pool is reproducible.
    """
    if k <= 0 or not records:
        return []
    rng = random.Random(seed)
    order = list(range(len(records)))
    rng.shuffle(order)  # tie-break order
    group_of = {i: n for n, group in enumerate(together) for i in group}
    feats = {i: coverage(records[i]) for i in order}
    seen_labels: set[str] = set()
    seen_density: set[int] = set()
    seen_spatial: set[int] = set()
    seen_sizes: set[int] = set()
    chosen: list[int] = []
    used: set[int] = set()  # the groups of `together` a photo was chosen from
    remaining = order[:]
    while remaining and len(chosen) < k:
        def gain(i: int) -> tuple[int, int, int, int]:
            f = feats[i]
            return (
                len(f.labels - seen_labels),
                int(f.density not in seen_density),
                int(f.spatial not in seen_spatial and f.spatial >= 0),
                len(f.sizes - seen_sizes),
            )

        best = max(remaining, key=gain)  # max() keeps the first of equals: the shuffled order decides ties
        if not any(gain(best)):
            # Nothing new is left, and nothing chosen later can make a photo new again: the rest is the shuffled
            # order, which rescanning every photo for each pick reached in O(k * n) (4.4 min for --k 20000).
            for i in remaining:
                if len(chosen) == k:
                    break
                if i in group_of:
                    if group_of[i] in used:
                        continue
                    used.add(group_of[i])
                chosen.append(i)
            break
        remaining.remove(best)
        chosen.append(best)
        if best in group_of:
            # A near-copy shows a prompt the same photo twice: one demonstration spent on nothing new.
            used.add(group_of[best])
            remaining = [i for i in remaining if group_of.get(i) != group_of[best]]
        f = feats[best]
        seen_labels |= f.labels
        seen_density.add(f.density)
        seen_spatial.add(f.spatial)
        seen_sizes |= f.sizes
    return chosen


def photos_found(rows: Iterable[tuple[int, Sample]], dataset: str | Path) -> None:
    """DatasetError at the first line whose photo is not where its path leads from the JSONL's folder: relocated, its
    path would lead nowhere from the output's folder too, and the file looked written while `data check` refused every
    line (a train.jsonl copied out of its folder)."""
    for line, sample in rows:
        for record in (sample.student, *sample.teachers):
            for image in record.images:
                if (why := _not_a_photo(resolve_image(dataset, image))) is not None:
                    raise DatasetError(dataset, line, f"image {image}: {why}")


def _not_a_photo(path: Path) -> str | None:
    """Why no photo can be read at `path` (None when a file is there). A name longer than the system allows was an
    OSError naming the photo alone, never the dataset line that holds it."""
    if (why := name_problem(path)) is not None:
        return why
    kind = file_kind(path)
    if kind is None:
        return None
    if kind in NOTHING_THERE:
        return f"no such file at {path} (a dataset's image paths are read from its own folder){spelling_note(path)}"
    return f"{kind} at {path}, not an image file"


@dataclass
class TeacherPool:
    """What `choose_teacher_pool` wrote: the training file's photos, the indices of those chosen, each photo left
    out as a near-copy of a teacher chosen (its index -> that teacher's), and each left out as a near-copy of a
    validation photo (its index -> that photo's line in the validation file and its image path as written there)."""

    records: list[ImageRecord]
    chosen: list[int]
    skipped: dict[int, int] = field(default_factory=dict)
    held_out: dict[int, tuple[int, str]] = field(default_factory=dict)


def write_teacher_pool(dataset: str | Path, out: str | Path, k: int = 10, seed: int = 42) -> tuple[list[ImageRecord], list[int]]:
    """`choose_teacher_pool`, returning `(records, chosen indices)`."""
    pool = choose_teacher_pool(dataset, out, k, seed)
    return pool.records, pool.chosen


def choose_teacher_pool(dataset: str | Path, out: str | Path, k: int = 10, seed: int = 42) -> TeacherPool:
    """Choose `k` teachers from a training JSONL, at most one of each photo's near-copies, and write them to `out`.

    Refused when `dataset` shares photos with the validation file beside `out`: a teacher's answer is in the
    prompt, so a validation photo as teacher leaks its answer into training. A training photo whose pixels are a
    validation photo's (data/near_copies.py: saved again, mirrored or turned) leaks it the same way: it is left out of
    the pool, and `TeacherPool.held_out` names it.

    Refused (OutputConflict) before anything is written when `out` is `dataset` or that validation file (the same
    real path or inode), or another process writes or reads `out` (data/library_outputs.py).
    """
    from bbuvl.data.layout import VAL  # layout imports this module

    with holding_outputs("data teachers", {"dataset": dataset, f"{VAL} beside out": Path(out).parent / VAL}, [out]):
        return _choose_held(dataset, out, k, seed)


def _choose_held(dataset: str | Path, out: str | Path, k: int, seed: int) -> TeacherPool:
    """`choose_teacher_pool`, its output held."""
    from bbuvl.data.layout import VAL  # layout imports this module

    rows = once_each(require_photos(read_lines(dataset), dataset), dataset)
    photos_found(rows, dataset)
    records = [s.student for _, s in rows]
    val = Path(out).parent / VAL
    held: list[tuple[int, str, Path]] = []  # each validation photo: its line, its path as written and where it is
    if val.is_file():
        held = [(line, s.student.image, resolve_image(val, s.student.image)) for line, s in read_lines(val)]
        held_out = {real_path(path) for _, _, path in held}
        shared = [r.image for r in records if real_path(resolve_image(dataset, r.image)) in held_out]
        if shared:
            raise ValueError(f"{dataset}: {len(shared)} photo(s) are validation photos in {val} (e.g. {shared[0]}); "
                             "choose teachers from the training file")
    # A copy a tool saved again (data/near_copies.py) has other bytes, so `once_each` let it through, and two
    # teachers of one pool could be one photo, or a teacher a validation photo. Validation photos come first, so that
    # each group of copies names one of them whenever it holds one.
    prints = photo_prints([path for _, _, path in held] + [resolve_image(dataset, r.image) for r in records])
    groups = copy_groups(len(prints), [(p.first, p.second) for p in near_copies(prints)])
    n_val = len(held)
    left_out = {i - n_val: held[g[0]][:2] for g in groups if g[0] < n_val for i in g if i >= n_val}
    eligible = [i for i in range(len(records)) if i not in left_out]
    if not eligible:
        # An empty pool is a file `data check` refuses, written with exit 0
        copy, (line, image) = next(iter(left_out.items()))
        raise ValueError(f"{dataset}: its {len(records)} photo(s) are all near-copies of validation photos in {val} "
                         f"(e.g. {records[copy].image}, a copy of {image}, line {line}), so no teacher is left: a "
                         "teacher's answer is in a training prompt. Choose teachers from photos of other views")
    at = {i: n for n, i in enumerate(eligible)}
    together = [[i - n_val for i in g] for g in groups if g[0] >= n_val and len(g) > 1]
    chosen = [eligible[n] for n in select_teachers([records[i] for i in eligible], k, seed,
                                                   [[at[i] for i in g] for g in together])]
    # Relative to where the file is written: `out` a link to a file in another folder is written through (atomic.py),
    # and paths relative to the link's folder led nowhere from the file's.
    write_dataset(out, [relocate_record(records[i], dataset, real_path(out).parent) for i in chosen])
    picked = set(chosen)
    skipped = {i: teacher for g in together for teacher in g if teacher in picked for i in g if i != teacher}
    return TeacherPool(records, chosen, skipped, left_out)
