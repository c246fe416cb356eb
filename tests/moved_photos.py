"""A dataset JSONL copied without its photos (its images/ folder left behind), for the commands that read one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def copied_without_photos(dataset: Path, folder: Path) -> tuple[Path, str]:
    """`dataset` copied into the new `folder` alone, and the photo its first line names (as the line names it)."""
    folder.mkdir()
    copy = Path(shutil.copy(dataset, folder / dataset.name))
    return copy, json.loads(copy.read_text(encoding="utf-8").splitlines()[0])["images"][0]
