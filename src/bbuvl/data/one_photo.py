"""Whether image paths are one photo: one file however its path is spelt ('..', a symbolic or hard link), or a
copy of its image data under another name.

A dataset names its photos relative to its own folder, so one photo named from two datasets has two spellings
(`images/a.jpg` from train.jsonl, `../data/images/a.jpg` from a teacher pool kept in a folder of its own): compared
as strings they were two photos, and a student was shown its own photo as a teacher, its answer in the prompt.
Content is compared as `bbuvl data check` compares it (`photo_digests`: a JPEG's data without its metadata), and only
between files of one byte size, so that a start-up reads no photo unless another has its size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from bbuvl.data.images import photo_digests
from bbuvl.paths import real_path

SAME_FILE, SAME_CONTENT = "the same file", "the same content"


def file_identity(path: Path) -> tuple:
    """The file `path` names: its device and inode when it can be read (every spelling and link agrees), else its
    path with its links followed."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", str(real_path(path)))
    return ("file", st.st_dev, st.st_ino)


def _size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _content(path: Path, known: dict[Path, str | None]) -> str | None:
    """The digest of `path`'s image data (`photo_digests`), read once into `known`; None for a file not read."""
    if path not in known:
        try:
            known[path] = photo_digests(path, whole=False)[1]
        except OSError:
            known[path] = None
    return known[path]


def one_photo(a: Path, b: Path, digests: Mapping[Path, str] | None = None) -> str | None:
    """How `a` and `b` are one photo (SAME_FILE, SAME_CONTENT), None when they are not: content by `digests` where it
    holds both (data check's), else read when the two files have one size."""
    if file_identity(a) == file_identity(b):
        return SAME_FILE
    if digests is not None and a in digests and b in digests:
        return SAME_CONTENT if digests[a] == digests[b] else None
    size = _size(a)
    if size is None or size != _size(b):
        return None
    known: dict[Path, str | None] = {}
    first = _content(a, known)
    return SAME_CONTENT if first is not None and first == _content(b, known) else None


def photos_among(pool: Sequence[Path], photos: Sequence[Path]) -> list[list[tuple[int, str]]]:
    """For each path of `pool`, the indices of `photos` that are its photo and how (SAME_FILE, SAME_CONTENT).

    Every file is looked up once (a stat each); only the `photos` of a pool file's byte size, and those pool files,
    are read to compare their content."""
    ids = [file_identity(p) for p in photos]
    by_id: dict[tuple, list[int]] = {}
    for i, key in enumerate(ids):
        by_id.setdefault(key, []).append(i)
    pool_ids = [file_identity(p) for p in pool]
    sizes = {s for p in pool if (s := _size(p)) is not None}
    by_size: dict[int, list[int]] = {}
    for i, p in enumerate(photos):
        if ids[i][0] == "file" and (s := _size(p)) in sizes:
            by_size.setdefault(s, []).append(i)
    known: dict[Path, str | None] = {}
    found = []
    for path, key in zip(pool, pool_ids):
        same = [(i, SAME_FILE) for i in by_id.get(key, [])]
        size = _size(path)
        if size in by_size and (digest := _content(path, known)) is not None:
            same += [(i, SAME_CONTENT) for i in by_size[size]
                     if ids[i] != key and _content(photos[i], known) == digest]
        found.append(same)
    return found
