"""Seeded train/validation split."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np

from bbuvl.data.layout import TEACHERS, TRAIN, VAL
from bbuvl.data.library_outputs import holding_outputs
from bbuvl.data.near_copies import copy_groups, how_alike, near_copies, photo_prints
from bbuvl.data.relocate import relocate_record, relocate_sample
from bbuvl.data.schema import (DatasetError, Sample, once_each, read_lines, require_photos, resolve_image, tile_origin,
                                write_dataset)
from bbuvl.data.teachers import photos_found, select_teachers

T = TypeVar("T")


def split_indices(n: int, val_ratio: float = 0.1, seed: int = 42) -> tuple[list[int], list[int]]:
    """`(train, val)` index lists; train keeps at least one photo, and val gets one too when `n >= 2` and
    `0 < val_ratio < 1`."""
    if not 0 <= val_ratio < 1:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    # One photo at --val-ratio 0.9 went to val, leaving a train file of none, which every later command refuses.
    n_val = min(round(n * val_ratio), max(n - 1, 0))
    if val_ratio > 0 and n >= 2:
        n_val = max(n_val, 1)
    return sorted(order[n_val:]), sorted(order[:n_val])


def split_items(items: Sequence[T], val_ratio: float = 0.1, seed: int = 42) -> tuple[list[T], list[T]]:
    """Split a sequence into `(train, val)` with `split_indices`."""
    tr, va = split_indices(len(items), val_ratio, seed)
    return [items[i] for i in tr], [items[i] for i in va]


def groups_in(part: Sequence[T], items: Sequence[T], together: Sequence[Sequence[int]]) -> list[list[int]]:
    """The groups of indices into `items` in `together` (near-copies of one photo), as indices into `part`, a side
    `split_by_origin` drew from `items` (the same objects): a group is on one side, so whole in `part` or absent."""
    at = {id(item): i for i, item in enumerate(part)}
    return [[at[id(items[i])] for i in group] for group in together if id(items[group[0]]) in at]


def split_by_origin(items: Sequence[T], origins: Sequence[object | None], val_ratio: float = 0.1, seed: int = 42,
                    together: Sequence[Sequence[int]] = ()) -> tuple[list[T], list[T]]:
    """`split_items` with the items of one origin (`tile_origin`: a photo's tiles and the whole photo kept beside them)
    on one side, and those of each group of indices in `together` (near-copies of one photo); each side in `items`'
    order."""
    first_of: dict[object, int] = {}
    pairs = [(first_of.setdefault(origin, i), i) for i, origin in enumerate(origins) if origin is not None]
    pairs += [(group[0], i) for group in together for i in group[1:]]
    train, val = split_items(copy_groups(len(items), pairs), val_ratio, seed)
    return [items[i] for i in sorted(i for g in train for i in g)], [items[i] for i in sorted(i for g in val for i in g)]


@dataclass
class SplitResult:
    """What `split_photos` wrote: photos on each side, the groups of near-copies it kept on one side (each the
    image paths of one photo's copies, as the dataset's lines name them), and the teachers in its pool (fewer than
    asked, and than the training photos, when it left out a teacher's near-copies)."""

    train: int
    val: int
    near_copies: list[list[str]] = field(default_factory=list)
    teachers: int = 0


def split_dataset(dataset: str | Path, out_dir: str | Path, val_ratio: float = 0.1, seed: int = 42,
                  num_teachers: int = 10) -> tuple[int, int]:
    """`split_photos`, returning the `(train, val)` sizes."""
    result = split_photos(dataset, out_dir, val_ratio, seed, num_teachers)
    return result.train, result.val


def split_photos(dataset: str | Path, out_dir: str | Path, val_ratio: float = 0.1, seed: int = 42,
                 num_teachers: int = 10) -> SplitResult:
    """Split a dataset JSONL into `out_dir`/train.jsonl, val.jsonl and teachers.jsonl.

    Image paths are rewritten to resolve from `out_dir`. The teacher pool is chosen from this split's training
    photos and always rewritten: a pool left from an earlier split would show validation photos (and their
    answers) in training prompts. Near-copies of one photo (data/near_copies.py: saved again at another quality or
    size, as PNG, its EXIF turn written into its pixels, mirrored or turned, made greyscale, darker or lower in
    contrast) go to one side, as a photo's tiles do.

    Refused (OutputConflict) before anything is written when a file it writes is `dataset` itself (`out_dir` its own
    folder), or another process writes or reads one (data/library_outputs.py).
    """
    outputs = [Path(out_dir) / name for name in (TRAIN, VAL, TEACHERS)]
    with holding_outputs("data split", {"dataset": dataset}, outputs):
        return _split_held(dataset, out_dir, val_ratio, seed, num_teachers)


def _split_held(dataset: str | Path, out_dir: str | Path, val_ratio: float, seed: int, num_teachers: int) -> SplitResult:
    """`split_photos`, its outputs held."""
    rows = once_each(require_photos(read_lines(dataset), dataset), dataset)
    photos_found(rows, dataset)
    # A photo re-encoded by a tool has other bytes, so `once_each` let both copies through: one on each side, validation
    # scored a photo training saw, and every metric rose.
    students = [resolve_image(dataset, sample.student.image) for _, sample in rows]
    prints = photo_prints(students)
    pairs = [(p.first, p.second) for p in near_copies(prints)]
    together = [g for g in copy_groups(len(rows), pairs) if len(g) > 1]
    # The tiles of one photo (and the whole photo `data tile` keeps beside them) go to one side: split one by one, a
    # photo's tiles were in val with the whole photo, which shows them all, in train, and `data check` passed it.
    train, val = split_by_origin(rows, [tile_origin(sample.student) for _, sample in rows], val_ratio, seed, together)
    if val_ratio > 0 and len(rows) >= 2 and not val:
        # Every photo near-copies of one (a burst, a fixed camera's shots) or tiles of one: a split would write an
        # empty val.jsonl with exit 0, and a validation photo drawn from the group would show training its copies.
        raise DatasetError(dataset, 0, f"its {len(rows)} photos are all one photo's near-copies or tiles (one group: "
                           f"{', '.join(s.student.image for _, s in rows[:3])}{', ...' if len(rows) > 3 else ''}), so "
                           "no validation photo can be drawn without its copies in train. Split it with --val-ratio 0 "
                           "and validate on photos of other views")
    _no_validation_teachers(train, val, dataset, dict(zip(students, prints)))
    # The pool takes one of each group, where it could show a photo and its re-encoded copy as two teachers
    copies = groups_in(train, rows, together)
    train, val = [s for _, s in train], [s for _, s in val]
    teachers = [train[i].student for i in select_teachers([s.student for s in train], num_teachers, seed, copies)]
    for name, part in ((TRAIN, train), (VAL, val)):
        write_dataset(Path(out_dir) / name, [relocate_sample(s, dataset, out_dir) for s in part])
    write_dataset(Path(out_dir) / TEACHERS, [relocate_record(r, dataset, out_dir) for r in teachers])
    return SplitResult(len(train), len(val), [[rows[i][1].student.image for i in g] for g in together], len(teachers))


def _no_validation_teachers(train: list[tuple[int, Sample]], val: list[tuple[int, Sample]], dataset: str | Path,
                            printed: dict[Path, np.ndarray | None]) -> None:
    """DatasetError when a line drawn for training shows, among its own teachers, the photo of a line drawn for
    validation, or a near-copy of it (data/near_copies.py; `printed`: the students' prints by path): its answer would
    be in a training prompt, and validation would score a photo shown solved."""
    held_out = {os.path.normpath(resolve_image(dataset, s.student.image)): line for line, s in val}
    for line, sample in train:
        for i, teacher in enumerate(sample.teachers):
            if (other := held_out.get(os.path.normpath(resolve_image(dataset, teacher.image)))) is not None:
                _refuse_teacher(dataset, line, i, teacher.image, f"is the photo of line {other}")
    # A teacher saved again by a tool (another quality, PNG, mirrored) has other bytes and another path: compared by
    # its print, validation photos first, so that a teacher's earliest near-copy is one of them whenever it has one.
    shown: dict[Path, tuple[int, int, str]] = {}  # a teacher's photo -> the first line, index and name showing it
    for line, sample in train:
        for i, teacher in enumerate(sample.teachers):
            shown.setdefault(resolve_image(dataset, teacher.image), (line, i, teacher.image))
    if not shown or not val:
        return
    held = [(line, resolve_image(dataset, s.student.image)) for line, s in val]
    teachers = list(shown)
    missing = [t for t in teachers if t not in printed]
    printed = {**printed, **dict(zip(missing, photo_prints(missing)))}
    for pair in near_copies([printed.get(path) for _, path in held] + [printed[t] for t in teachers]):
        if pair.first < len(held) <= pair.second:
            line, i, image = shown[teachers[pair.second - len(held)]]
            how = f" {pair.how}" if pair.how else ""
            _refuse_teacher(dataset, line, i, image, f"has the pixels of line {held[pair.first][0]}'s photo{how} (a "
                            f"near-copy: {how_alike(pair.levels, pair.how)})")


def _refuse_teacher(dataset: str | Path, line: int, index: int, image: str, what: str) -> None:
    """The DatasetError of a training line's teacher `index` that `what` of a line drawn for validation."""
    raise DatasetError(dataset, line, f"teachers[{index}]: image {image} {what}, which this split draws for "
                       "validation: its answer would be in a training prompt. Split the photos alone (one record per "
                       "line, no teachers): training draws teachers from the teacher pool this split chooses from its "
                       "training part")
