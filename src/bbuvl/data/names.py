"""Names derived from other names (a tile's from its photo's, a crop's from its record's) never collide.

Shortening a path to a file name loses something (`a.jpg` and `a.jpeg` share the stem `a`; `../x.jpg` and
`up/x.jpg` both become `up/x`), and two sources under one name put one record's boxes on the other's pixels.
A `NameBook` hands out the derived name to the first source that asks for it and, to any other source, the
same name with a short hash of that source added, so one writer's outputs are one-to-one with its sources.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

HASH_CHARS = 10


class NameBook:
    """Derived names of one run, each owned by one source."""

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}

    def name(self, derived: str, source: str) -> str:
        """`derived` for its first source; for another source `derived` with a hash of the source before its suffix."""
        if self._owner.setdefault(derived, source) == source:
            return derived
        path = PurePosixPath(derived)
        digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:HASH_CHARS]
        hashed = str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))
        if self._owner.setdefault(hashed, source) != source:
            raise ValueError(f"{source}: its derived name {hashed} is taken by {self._owner[hashed]} (a hash collision)")
        return hashed
