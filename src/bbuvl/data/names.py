"""Names derived from other names (a tile's from its photo's, a crop's from its record's) never collide.

Shortening a path to a file name loses something (`a.jpg` and `a.jpeg` share the stem `a`; `../x.jpg` and
`up/x.jpg` both become `up/x`), and two sources under one name put one record's boxes on the other's pixels.
A `NameBook` hands out the derived name to the first source that asks for it and, to any other source, the
same name with a short hash of that source added, so one writer's outputs are one-to-one with its sources.

Two names are one name when they would be one file anywhere the output is copied to: `./a` and `a` (one path
on every system), `A` and `a` (one file on macOS and Windows), `é` composed and decomposed (one file on macOS,
and `data check` compares file names in NFC: data/text.py). So names are compared by `name_key`.
"""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import PurePosixPath

HASH_CHARS = 10


def name_key(name: str) -> str:
    """What decides whether two derived names are one file: the path normalised (`./`, `//`), NFC, case folded."""
    return unicodedata.normalize("NFC", PurePosixPath(name).as_posix()).casefold()


def safe_stem(path: str) -> str:
    """A photo's relative path without its suffix, as a path that stays below the folder it is written into:
    `..` becomes `up`, `.` and empty parts (a leading `/`, `a//b`) are dropped."""
    parts = PurePosixPath(path.replace("\\", "/")).with_suffix("").parts if path else ()
    kept = ["up" if part == ".." else part for part in parts if part not in ("/", ".", "")]
    return "/".join(kept) or "photo"


class NameBook:
    """Derived names of one run, each owned by one source."""

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}  # name_key -> source

    def name(self, derived: str, source: str) -> str:
        """`derived` for its first source; for another source `derived` with a hash of the source before its suffix."""
        derived = PurePosixPath(derived).as_posix()
        if self._owner.setdefault(name_key(derived), source) == source:
            return derived
        path = PurePosixPath(derived)
        digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()
        # A longer hash when a photo is itself named like a hashed name (`b.4eaac5baf2.png` beside `b.jpg`, `b.png`)
        for chars in range(HASH_CHARS, len(digest) + 1):
            hashed = str(path.with_name(f"{path.stem}.{digest[:chars]}{path.suffix}"))
            if self._owner.setdefault(name_key(hashed), source) == source:
                return hashed
        raise ValueError(f"{source}: every derived name {derived} could take is taken (a hash collision)")
