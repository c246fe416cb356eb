"""Seeded train/validation split."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Sequence, TypeVar

from bbuvl.data.layout import TEACHERS, TRAIN, VAL
from bbuvl.data.relocate import relocate_record, relocate_sample
from bbuvl.data.schema import (DatasetError, Sample, once_each, read_lines, require_photos, resolve_image, tile_origin,
                                write_dataset)
from bbuvl.data.teachers import select_teachers

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


def split_by_origin(items: Sequence[T], origins: Sequence[object | None], val_ratio: float = 0.1,
                    seed: int = 42) -> tuple[list[T], list[T]]:
    """`split_items` with the items of one origin (`tile_origin`: a photo's tiles and the whole photo kept beside them)
    on one side; each side in `items`' order."""
    groups: dict[object, list[int]] = {}
    for i, origin in enumerate(origins):
        groups.setdefault(i if origin is None else ("origin", origin), []).append(i)
    train, val = split_items(list(groups.values()), val_ratio, seed)
    return [items[i] for i in sorted(i for g in train for i in g)], [items[i] for i in sorted(i for g in val for i in g)]


def split_dataset(dataset: str | Path, out_dir: str | Path, val_ratio: float = 0.1, seed: int = 42,
                  num_teachers: int = 10) -> tuple[int, int]:
    """Split a dataset JSONL into `out_dir`/train.jsonl, val.jsonl and teachers.jsonl; returns `(train, val)` sizes.

    Image paths are rewritten to resolve from `out_dir`. The teacher pool is chosen from this split's training
    photos and always rewritten: a pool left from an earlier split would show validation photos (and their
    answers) in training prompts.
    """
    rows = once_each(require_photos(read_lines(dataset), dataset), dataset)
    _photos_found(rows, dataset)
    # The tiles of one photo (and the whole photo `data tile` keeps beside them) go to one side: split one by one, a
    # photo's tiles were in val with the whole photo, which shows them all, in train, and `data check` passed it.
    train, val = split_by_origin(rows, [tile_origin(sample.student) for _, sample in rows], val_ratio, seed)
    _no_validation_teachers(train, val, dataset)
    train, val = [s for _, s in train], [s for _, s in val]
    teachers = [train[i].student for i in select_teachers([s.student for s in train], num_teachers, seed)]
    for name, part in ((TRAIN, train), (VAL, val)):
        write_dataset(Path(out_dir) / name, [relocate_sample(s, dataset, out_dir) for s in part])
    write_dataset(Path(out_dir) / TEACHERS, [relocate_record(r, dataset, out_dir) for r in teachers])
    return len(train), len(val)


def _photos_found(rows: list[tuple[int, Sample]], dataset: str | Path) -> None:
    """DatasetError at the first line whose photo is not where its path leads from the JSONL's folder: relocated, its
    path would lead nowhere from `out_dir` too, and the split looked written while `data check` refused every line
    (a train.jsonl and val.jsonl joined into a file outside their folder)."""
    for line, sample in rows:
        for record in (sample.student, *sample.teachers):
            for image in record.images:
                if not resolve_image(dataset, image).is_file():
                    raise DatasetError(dataset, line, f"image {image}: no such file at {resolve_image(dataset, image)} "
                                                      "(a dataset's image paths are read from its own folder)")


def _no_validation_teachers(train: list[tuple[int, Sample]], val: list[tuple[int, Sample]], dataset: str | Path) -> None:
    """DatasetError when a line drawn for training shows, among its own teachers, the photo of a line drawn for
    validation: its answer would be in a training prompt, and validation would score a photo shown solved."""
    held_out = {os.path.normpath(resolve_image(dataset, s.student.image)): line for line, s in val}
    for line, sample in train:
        for i, teacher in enumerate(sample.teachers):
            if (other := held_out.get(os.path.normpath(resolve_image(dataset, teacher.image)))) is not None:
                raise DatasetError(dataset, line, f"teachers[{i}]: image {teacher.image} is the photo of line {other}, "
                                   "which this split draws for validation: its answer would be in a training prompt. "
                                   "Split the photos alone (one record per line, no teachers): training draws teachers "
                                   "from the teacher pool this split chooses from its training part")
