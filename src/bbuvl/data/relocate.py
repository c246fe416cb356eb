"""Rewrite a record's image paths so that they resolve from another folder exactly as they did from their file."""

from __future__ import annotations

import os
from pathlib import Path

from bbuvl.data.schema import ImageRecord, Sample, resolve_image
from bbuvl.paths import real_path


def relocate_record(record: ImageRecord, src: str | Path, dst_dir: str | Path) -> ImageRecord:
    """The record with image paths that resolve from `dst_dir` (relative when possible) as they did from `src`."""
    images = []
    for image in record.images:
        path = resolve_image(src, image)
        try:
            images.append(Path(os.path.relpath(path, real_path(dst_dir))).as_posix())
        except ValueError:  # another drive (Windows): no relative path exists
            images.append(path.as_posix())
    return record.model_copy(update={"images": images})


def relocate_sample(sample: Sample, src: str | Path, dst_dir: str | Path) -> ImageRecord | Sample:
    """A sample relocated like `relocate_record`; a plain photo is written back as a plain record."""
    student = relocate_record(sample.student, src, dst_dir)
    if not sample.teachers:
        return student
    return Sample(student=student, teachers=[relocate_record(t, src, dst_dir) for t in sample.teachers])
