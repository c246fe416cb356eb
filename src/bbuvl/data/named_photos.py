"""Output files that are photos an input names: refused, with `--overwrite` too (docs/outputs.md, "Names one-to-one, outputs outside inputs").

A command's inputs are checked against its outputs by path (bbuvl/outputs.py `check_not_inputs`), but a dataset or
predictions JSONL also stands for every photo its lines name. `predict -o images/a.jpg --overwrite`,
`eval --out images/b.jpg --overwrite`, a report's `pr_curve.png` among the ground truth's photos and
`data export-coco DATASET images/c.jpg --overwrite` each replaced a photo the input named with JSON or a curve.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

from bbuvl.data.schema import DatasetError, iter_json_lines, resolve_image
from bbuvl.outputs import OutputConflict


def _file_id(path: Path) -> tuple[int, int] | None:
    """`(device, inode)` of the file `path` reaches (links followed, so a link and a hard link are the file); None
    when there is no such file."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def photo_names(line: object) -> list[str]:
    """The photos a JSONL line names: a dataset line's `images`, a prediction line's `image`; none for anything else."""
    if not isinstance(line, dict):
        return []
    images = line.get("images", line.get("image"))
    names = images if isinstance(images, list) else [images]
    return [name for name in names if isinstance(name, str) and name]


def refuse_named_photos(inputs: Mapping[str, Path | None], files: Iterable[Path]) -> None:
    """Raise OutputConflict when an output file is a photo that an input JSONL names (`--gt line 3's photo`).

    Only files already there are looked for, so a run writing new files reads nothing; each `.jsonl` input is then read
    once, its lines' photos compared by the file they reach.
    """
    there = {file_id: Path(out) for out in files if (file_id := _file_id(Path(out))) is not None}
    if not there:
        return
    for what, given in inputs.items():
        if given is None or Path(given).suffix.lower() != ".jsonl" or not Path(given).is_file():
            continue
        try:
            for no, line in iter_json_lines(given, "input"):
                for name in photo_names(line):
                    if (out := there.get(_file_id(resolve_image(given, name)))) is not None:
                        raise OutputConflict(f"{out}: is the photo {name} that the input {what} ({given}) names on "
                                             f"line {no}; writing it would destroy the photo, --overwrite too. Choose "
                                             "another output")
        except DatasetError:  # not a JSONL at all: the command that reads it says so, in its own words
            continue
