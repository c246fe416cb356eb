"""Files known by their content: SHA-256 digests, re-checked cheaply by a stat recorded beside each digest.

Hashing is what makes an identity honest and what makes it slow (a 3B checkpoint is ~7 GB: tens of seconds on
a busy CPU). So a digest is recorded once together with the file's (size, mtime_ns, ctime_ns, inode), and
trusted again only while all four still match; any other file is hashed again. A user can set mtime back
(`touch -d`, `cp -p`) but not ctime: every write, copy or replacement of a file changes its ctime or inode,
so a file rewritten in place with the same size and mtime is still hashed again. A false alarm (a `chmod`,
a copy of the same bytes) costs one hash, never a wrong answer. docs/resume.md has the measured costs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class FileDigest:
    """A file's SHA-256 and the stat it was taken at."""

    name: str  # how the caller names it (relative to a folder, or as the input lists it)
    sha256: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> "FileDigest | None":
        """The digest a dict records; None when it is not one (a damaged or older record is simply not trusted)."""
        try:
            found = cls(**data)
        except TypeError:
            return None
        ints = (found.size, found.mtime_ns, found.ctime_ns, found.inode)
        ok = isinstance(found.name, str) and isinstance(found.sha256, str) and all(type(v) is int for v in ints)
        return found if ok else None


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def file_digest(path: Path, name: str, known: Mapping[str, FileDigest] | None = None) -> FileDigest:
    """The digest of `path` (called `name`): `known[name]` when its stat still matches, else hashed now. Either way
    the digest is named `name`: a record kept under another name (a LoRA base's own `content_digest.json` names
    `config.json` what its LoRA checkpoint's identity calls `base/config.json`) would otherwise be recorded under its
    old name, as another file's.

    OSError when the file cannot be read.
    """
    st = path.stat()
    old = (known or {}).get(name)
    if old is not None and (old.size, old.mtime_ns, old.ctime_ns, old.inode) == _stat_key(st):
        return old if old.name == name else replace(old, name=name)
    with path.open("rb") as fh:
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    # The stat from before hashing: a write during the hash changes ctime, so this record is never trusted again.
    return FileDigest(name, sha, *_stat_key(st))


def combined(digests: Iterable[FileDigest]) -> str:
    """One SHA-256 over (name, content digest) pairs in the order given: the identity of a set of files."""
    h = hashlib.sha256()
    for d in digests:
        h.update(d.name.encode("utf-8", "surrogateescape") + b"\0" + d.sha256.encode() + b"\n")
    return h.hexdigest()


def by_name(records: Iterable[Any]) -> dict[str, FileDigest]:
    """Recorded digests (JSON dicts) keyed by name, skipping any that are damaged."""
    found = (FileDigest.from_json(r) for r in records if isinstance(r, dict))
    return {d.name: d for d in found if d is not None}
