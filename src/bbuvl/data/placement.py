"""Where imported images go in a dataset folder: one file per distinct photo, never one file for two.

An importer names each image after its path under the source folder (`images/siteA/IMG_0001.jpg`). When
that name is already taken by other bytes (two photos of one name from outside the folder, or a file
left by an earlier import), the content hash is added (`IMG_0001.3f2a9c1b0e.jpg`) instead of reusing
the file: reusing it would put one photo's boxes on another photo.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bbuvl.atomic import atomic_path, sync_files
from bbuvl.data.images import file_digest
from bbuvl.data.names import fit_name, name_key, portable_part
from bbuvl.data.text import file_name_key
from bbuvl.paths import real_path

HASH_CHARS = 10


def preferred_name(src: Path, images_dir: Path) -> Path:
    """`images/` + the path under `images_dir` (just the file name for a file outside it; a path that starts with
    `images/` as it is), composed as NFC, each part as every system can hold it (data/names.py: `a:b.jpg` is written
    `a_b.jpg`).

    The photo's own path is normalised, never resolved: a symbolic link keeps the name the user gave it.
    """
    photo = Path(os.path.abspath(src))
    rel = next((photo.relative_to(base) for base in (Path(os.path.abspath(images_dir)), real_path(images_dir))
                if photo.is_relative_to(base)), Path(src.name))  # outside: a file_name imported with allow_outside
    # A path that already starts with images/ (a dataset folder's own, as `data export-coco` writes it) is kept:
    # images/images/a.jpg grew a level with every export and import (docs/data_coco.md).
    parts = rel.parts[1:] if rel.parts[:1] == ("images",) and len(rel.parts) > 1 else rel.parts
    name = Path("images", *(portable_part(file_name_key(part)) for part in parts)).as_posix()
    return Path(fit_name(name, photo.as_posix()))  # a long name keeps room for its hash and temporary


class ImagePlacer:
    """Copies (or hard-links) images into a dataset folder under names no two distinct photos share."""

    def __init__(self, out: Path, link: bool = False):
        self.out, self.link = out, link
        # name_key of a dataset-relative name -> that name and the digest of the bytes placed there: `A.jpg` and
        # `a.jpg` are one file on Windows and macOS, so a second photo never takes the first's name in another case.
        self.claimed: dict[str, tuple[Path, str]] = {}
        self.copied: list[Path] = []  # copies not yet known to be on the disk (`flush`)

    def place(self, src: Path, preferred: Path, digest: str | None = None) -> Path:
        """Put `src` into the dataset; returns its dataset-relative name (the same one for the same bytes). `digest`:
        the SHA-256 of `src` when the caller has it already."""
        digest = digest or file_digest(src)
        hashed = preferred.with_name(f"{preferred.stem}.{digest[:HASH_CHARS]}{preferred.suffix}")
        for name in (preferred, hashed):
            key = name_key(name.as_posix())
            owner = self.claimed.get(key)
            if owner is None and (self.out / name).exists():
                owner = (name, file_digest(self.out / name))  # left by an earlier import into this folder
            if owner is None:
                self._copy(src, self.out / name)
                owner = self.claimed[key] = (name, digest)
            if owner[1] == digest:
                self.claimed[key] = owner
                return owner[0]
        raise ValueError(f"{src}: {hashed} already holds other bytes with the same hash prefix; import into an empty folder")

    def _copy(self, src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if self.link:
            try:
                os.link(src, dst)
                return
            except OSError:  # another filesystem: fall back to a copy
                pass
        # A killed import leaves no half-copied photo under a real name; the disk is waited on once for them all
        # (`flush`), not once a photo.
        with atomic_path(dst, sync=False) as tmp:
            shutil.copy2(src, tmp)
        self.copied.append(dst)

    def flush(self) -> None:
        """Put every photo copied so far on the disk, at once: call it before a file that names them is written."""
        sync_files(self.copied)
        self.copied = []
