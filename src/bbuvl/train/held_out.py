"""Validation stays out of training: data.val is never also data.train, the teacher pool or the caption refit's
photos, nor shares photos with them (a training line's own teachers included).

Teachers are shown to the model with their answers, so a teacher pool that is the validation file (or holds its
photos) shows the validation answers during training, and the validation loss then measures recall, not
learning. The same holds for data.train. Files are compared as the file system sees them (a symbolic link, a
hard link or another spelling of the path is the same file) and by content (a copy is the same data); photos
by the file each resolves to.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bbuvl.config import Config
from bbuvl.data.schema import resolve_image
from bbuvl.paths import real_path
from bbuvl.train.data_files import DataFiles


class HeldOutError(ValueError):
    """A training input is, or holds photos of, the validation set; `keys`: that input's config key and data.val."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.keys = (key, "data.val")


def check_held_out(cfg: Config, files: DataFiles | None = None) -> None:
    """Raise HeldOutError when data.train, a teacher pool shown in training, or the caption refit's photos is data.val
    or shares photos with it (the files read through `files` when given, train/data_files.py)."""
    if cfg.data.val is None:
        return
    files = files or DataFiles()
    val = _path(cfg.data.val)
    shown = {"data.train": cfg.data.train}
    if cfg.training.method == "sft" and cfg.data.teachers and cfg.data.teacher_ratio > 0 and cfg.data.num_teachers > 0:
        shown["data.teachers"] = cfg.data.teachers
    if cfg.detection.refits and cfg.detection.caption_refit.photos:
        shown["detection.caption_refit.photos"] = cfg.detection.caption_refit.photos
    for key, value in shown.items():
        path = _path(value)
        how = _same_data(path, val)
        if how:
            raise HeldOutError(f"{key} {value} and data.val {cfg.data.val} {how}: the validation answers would be "
                               f"shown in training{' as teacher examples' if key == 'data.teachers' else ''}, and the "
                               "validation loss would measure recall, not learning. Give data.val photos the run never "
                               "sees (`bbuvl data split` writes train, val and a teacher pool drawn from train)", key)
    # A photo listed in both files (a line copied, two datasets joined) leaks as surely as the same file does.
    fixes = {"data.train": ("training", "Give each photo to one of the two files (`bbuvl data split` writes them apart)"),
             "data.teachers": ("teacher", "Draw the teacher pool from the training photos (`bbuvl data teachers "
                                          "TRAIN.jsonl`)"),
             "detection.caption_refit.photos": ("refit", "Give the refit photos the run never validates on")}
    val_photos = _photo_ids(val, files) if any(key in shown for key in fixes) else set()
    for key, (what, fix) in fixes.items():
        if key not in shown:
            continue
        path = _path(shown[key])
        both = [(line, name) for line, name, photo in _photos(path, files) if photo in val_photos] if path.is_file() else []
        if both:
            line, name = both[0]
            raise HeldOutError(f"{path}:{line}: {what} photo {name} is also a photo of data.val {cfg.data.val} "
                               f"({len(both)} {what} photo{'s' if len(both) > 1 else ''} in all): its answer would be "
                               f"shown in training. {fix}", key)
        # A training line's own teachers are shown with their answers in that line's prompt
        taught = [(line, name) for line, name, photo in _photos(path, files, teachers=True) if photo in val_photos] \
            if key == "data.train" and path.is_file() else []
        if taught:
            line, name = taught[0]
            raise HeldOutError(f"{path}:{line}: teacher photo {name} of this training line is also a photo of data.val "
                               f"{cfg.data.val} ({len(taught)} in all): its answer would be shown in that line's "
                               "prompt. Give the training lines teachers the run never validates on", key)


def _path(value: str) -> Path:
    return Path(os.path.expanduser(os.path.expandvars(value)))


def _same_data(a: Path, b: Path) -> str | None:
    """How `a` and `b` are the same data ("are one file", "hold the same bytes"), None when they are not."""
    if not (a.is_file() and b.is_file()):
        return None  # a missing file is the data reader's error to name
    if real_path(a) == real_path(b) or os.path.samefile(a, b):
        return "are the same file"
    if a.stat().st_size == b.stat().st_size and _sha256(a) == _sha256(b):
        return "hold the same bytes"
    return None


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _photos(dataset: Path, files: DataFiles, teachers: bool = False) -> list[tuple[int, str, tuple]]:
    """(line, photo name, the file it resolves to) for every student photo of a dataset, or with `teachers` every
    photo a line shows as its own teacher; bad lines are skipped here (the training data reader names them)."""
    out = []
    for row in files.rows(dataset):
        if row.sample is not None:
            records = row.sample.teachers if teachers else (row.sample.student,)
            out.extend((row.line, r.image, _file_id(resolve_image(dataset, r.image))) for r in records)
    return out


def _photo_ids(dataset: Path, files: DataFiles) -> set[tuple]:
    return {key for _, _, key in _photos(dataset, files)} if dataset.is_file() else set()


def _file_id(path: Path) -> tuple:
    """The file a path names: its device and inode when it exists (links and spellings agree), else its resolved path."""
    try:
        st = path.stat()
        return (st.st_dev, st.st_ino)
    except OSError:
        return (str(real_path(path)),)
