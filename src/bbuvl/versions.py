"""Which software wrote an output: bbu-vl's version and the digest of its own files, and the libraries that decide
what a model computes and how a photo is read.

A predictions file resumed after an upgrade would hold lines of two programs (another chat template, another resize,
another torch kernel can each change an answer), and `bbuvl 0.1.0` names no edit made since it was released, nor a
checkout's commits: so bbu-vl itself is named by the SHA-256 of every file of the installed package as well. The
libraries are named by their installed versions (docs/outputs.md, "Which software wrote it").
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import metadata
from pathlib import Path

from bbuvl import __version__

# The distributions whose version decides a model's numbers or a photo's pixels (tokenizers: the text's tokens).
LIBRARIES = ("torch", "transformers", "tokenizers", "pillow")
PACKAGE = "bbuvl"
SOURCE = "bbuvl_source"
_SOURCE_DIGITS = 16


def software(*extra: str) -> dict[str, str]:
    """bbu-vl's version and source digest, then each library of LIBRARIES (and `extra` distributions) that is
    installed, with its version: a new dict each call, read once a process."""
    return dict(_found(LIBRARIES + extra))


@cache
def _found(libraries: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    found = [(PACKAGE, __version__), (SOURCE, source_digest())]
    for name in libraries:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(found)


def source_digest(root: Path | None = None) -> str:
    """The SHA-256 (its first 16 hex digits) over every file of the bbuvl package under `root` (default: the one
    running), by relative path and content; compiled caches are left out, they follow the sources."""
    root = root or Path(__file__).parent
    digest = hashlib.sha256()
    files = sorted((p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"),
                   key=lambda p: p.relative_to(root).as_posix())
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:_SOURCE_DIGITS]


def software_differences(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Each way two `software()` records differ, as 'name OLD (now NEW)'; empty when alike or when either side is
    unrecorded (an output written before outputs named their software)."""
    if not old or not new:
        return []
    out = []
    for name in sorted(set(old) | set(new), key=lambda n: (n not in (PACKAGE, SOURCE), n)):
        was, now = old.get(name, "<not installed>"), new.get(name, "<not installed>")
        if was != now:
            out.append(f"bbuvl's own files changed (source {was}, now {now})" if name == SOURCE
                       else f"{name} {was} (now {now})")
    return out
