"""The dataset files a run's start-up reads, each parsed once.

Before the output folder is claimed, training checks where the photos of data.train, data.val, data.teachers and
the caption refit's photos lie (train/run_dir.py) and that validation stays out of training (train/held_out.py);
then it builds its datasets and its label vocabulary from the same files. Each of those read and parsed the JSONL
again: about a second per 10,000 lines each time. They now take their lines from one `DataFiles`.
"""

from __future__ import annotations

import os
from pathlib import Path

from bbuvl.data.faults import Faults
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import Row, iter_dataset, resolve_image


class DataFiles:
    """Every line of each dataset file (its sample or its error), read on first use and kept for the start-up."""

    def __init__(self) -> None:
        self._rows: dict[str, list[Row]] = {}
        self._faults: dict[str | None, Faults] = {}

    def rows(self, path: str | Path) -> list[Row]:
        """The lines of `path`, blank ones left out; an error opening it raises, and nothing is kept for it."""
        key = os.path.abspath(path)  # two spellings of one path are one read
        if key not in self._rows:
            self._rows[key] = list(iter_dataset(path))
        return self._rows[key]

    def faults(self, hierarchy: str | Path | None, tree: Hierarchy | None = None) -> Faults:
        """The faults of the hierarchy file `hierarchy` (the shipped one when None), found once for the start-up (the
        fault counts it prints, `loss.fault_weight`'s captions and the run record); `tree`: that file already read."""
        key = None if hierarchy is None else os.path.abspath(os.path.expanduser(hierarchy))
        if key not in self._faults:
            self._faults[key] = Faults.load(tree if tree is not None else hierarchy)
        return self._faults[key]


def photo_folders(dataset: str | Path, key: str, files: DataFiles | None = None) -> dict[str, Path]:
    """The folders a dataset's photos (students and teachers) are in, each named after its first line
    (`data.train line 3's photo folder`); lines that do not parse are skipped (the data reader names them)."""
    found: dict[Path, str] = {}
    seen: set[str] = set()
    for row in (files or DataFiles()).rows(dataset):
        if row.sample is None:
            continue
        for record in (row.sample.student, *row.sample.teachers):
            parent = str(Path(record.image).parent)
            if parent not in seen:  # resolving each photo would cost more than reading the file
                seen.add(parent)
                found.setdefault(resolve_image(dataset, record.image).parent, f"{key} line {row.line}'s photo folder")
    return {what: folder for folder, what in found.items()}
