"""Names derived from other names (a tile's from its photo's, a crop's from its record's) never collide.

Shortening a path to a file name loses something (`a.jpg` and `a.jpeg` share the stem `a`; `../x.jpg` and
`up/x.jpg` both become `up/x`), and two sources under one name put one record's boxes on the other's pixels.
A `NameBook` hands out the derived name to the first source that asks for it and, to any other source, the
same name with a short hash of that source added, so one writer's outputs are one-to-one with its sources.

Two names are one name when they would be one file anywhere the output is copied to: `./a` and `a` (one path
on every system), `A` and `a` (one file on macOS and Windows; `ı` and `I` too on Windows), `é` composed and
decomposed (one file on macOS, and `data check` compares file names in NFC: data/text.py). So names are compared by
`name_key`.

The photos a dataset writer creates (convert, tile, import-coco) are named so every system can hold them
(`portable_path`): a dataset is made on Linux and copied to Windows, where `a:b.jpg`, `a.` or `CON.jpg` cannot be
created (an unzip stops or renames them, and the records then name files that are not there). Names a writer only
refers to (a hand-made JSONL's photos, export-coco's file_name) are the user's: `data check` and `export-coco` warn
about them (`portability_problem`) and nothing renames them.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
import urllib.parse
from pathlib import Path, PurePosixPath
from typing import Iterable

from bbuvl.data.text import show_text

HASH_CHARS = 10
# What Windows refuses in a file name: these characters (`\` is its separator) and the control characters.
_FORBIDDEN = re.compile(r'[<>:"|?*\\\x00-\x1f]')
# Names Windows keeps for devices, whatever the suffix: `con.jpg` opens the console there, not a file.
_DEVICES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"{port}{n}" for port in ("COM", "LPT") for n in "123456789¹²³")})


def _device(part: str) -> bool:
    return part.split(".")[0].rstrip(" ").upper() in _DEVICES


def portable_part(part: str) -> str:
    """`part` (one file or folder name) as every system can hold it: a character Windows refuses (`<>:"|?*\\`, a
    control character) as `_`, each trailing dot or space as `_` (Windows drops them), and `_` after a device name
    (`CON.jpg` -> `CON_.jpg`). A name that needs none of it is returned as it is."""
    part = _FORBIDDEN.sub("_", part)
    kept = part.rstrip(". ")
    part = kept + "_" * (len(part) - len(kept))
    if _device(part):
        head, dot, rest = part.partition(".")
        part = f"{head}_{dot}{rest}"
    return part


def portable_path(path: str) -> str:
    """The relative POSIX path `path` with each part made portable (`portable_part`); `..` is left as it is."""
    return "/".join(part if part == ".." else portable_part(part) for part in PurePosixPath(path).parts)


# A photo named by a URL in a dataset (`https://host/a.jpg`, `s3://bucket/a.jpg`): read as a path below the dataset's
# folder, the `//` collapses to `/`, so both spellings are matched; a Windows drive (`C:/`) has a one-letter scheme.
_URL = re.compile(r"(?:^|/)([A-Za-z][A-Za-z0-9+.-]+):/")


def url_scheme(name: str) -> str | None:
    """The scheme (`https`, `s3`, ...) when the photo name `name` is a URL, read where a path was expected; else None."""
    found = _URL.search(name.replace("\\", "/"))
    return found.group(1).lower() if found else None


# A name that is a URL whole (`https://host/a.jpg`, `file:///data/a.jpg`): its scheme, then `//`.
_URL_START = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://")


def url_start(name: str) -> str | None:
    """The scheme (lower case) when `name` as written is a URL (`https://host/a.jpg`); else None."""
    found = _URL_START.match(name)
    return found.group(1).lower() if found else None


def local_file_uri(name: str) -> str | None:
    """The path on this machine a `file:` URI names (`file:///data/a%20b.jpg` -> `/data/a b.jpg`, its escapes decoded
    as this system decodes file names); None for any other name, and for a `file://host/...` of another machine."""
    parts = urllib.parse.urlsplit(name)
    if parts.scheme.lower() != "file" or parts.netloc.lower() not in ("", "localhost") or parts.query or parts.fragment:
        return None  # `?` and `#` are no part of a file URI's path: such a name is a file's, if any
    return os.fsdecode(urllib.parse.unquote_to_bytes(parts.path))


_DRIVE = re.compile(r"(?:^|/)([A-Za-z]):[\\/]")


def windows_drive(name: str) -> str | None:
    """The drive letter when the photo name `name` is a Windows absolute path (`C:\\data\\a.jpg`); else None."""
    found = _DRIVE.search(name)
    return found.group(1).upper() if found else None


def portability_problem(path: str) -> str | None:
    """Why Windows could not hold the relative path `path` (a photo as a dataset names it), or None when it can. An
    absolute path is not judged: it names a file on this machine, which moves with no dataset."""
    posix = PurePosixPath(path.replace("\\", "/"))
    if posix.is_absolute() or re.match(r"[A-Za-z]:(/|$)", posix.as_posix()) or url_scheme(path):
        return None  # a URL is no file here at all: the photo's "not found" says so
    for part in (p for p in posix.parts if p not in (".", "..")):
        if part == portable_part(part):
            continue
        bad = "".join(dict.fromkeys(_FORBIDDEN.findall(part)))
        why = (f"holds {show_text(bad)}, which Windows refuses in a file name" if bad
               else "ends in a dot or a space, which Windows drops" if part != part.rstrip(". ")
               else f"is the device name {part.split('.')[0].rstrip(' ').upper()} on Windows")
        return f"{show_text(part)} {why}: copied there, this photo would be lost or renamed"
    return None


def name_key(name: str) -> str:
    """What decides whether two derived names are one file: the path normalised (`./`, `//`), NFC, case folded, after
    upper-casing: Windows compares names by their letters upper-cased, one at a time, and so holds `ı.jpg` (a dotless
    i) and `I.jpg` as one file, where case folding alone keeps `ı` apart from `i` (a tile of each took one name)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", PurePosixPath(name).as_posix()).upper().casefold())


def safe_stem(path: str) -> str:
    """A photo's relative path without its suffix, as a path that stays below the folder it is written into:
    `..` becomes `up`, `.` and empty parts (a leading `/`, `a//b`) are dropped."""
    parts = PurePosixPath(path.replace("\\", "/")).with_suffix("").parts if path else ()
    kept = ["up" if part == ".." else part for part in parts if part not in ("/", ".", "")]
    return "/".join(kept) or "photo"


# A file system holds names of at most 255 bytes (a Chinese character is 3 of them), and a writer adds to a derived
# name: a tile's `__X_Y_WxH`, a hash when two sources share it, and the temporary `.NAME.PID.XXXXXXXX.tmp.EXT` it is
# written as first (bbuvl/atomic.py). A derived name keeps at most this many bytes, so that all of it fits: a photo
# named in 70 Chinese characters failed its tile's write, and with it the whole `data tile` run.
MAX_NAME_BYTES = 160


def fit_name(path: str, source: str, limit: int = MAX_NAME_BYTES) -> str:
    """`path` (relative, POSIX) with its last part cut to `limit` bytes when longer: the head of its stem, a hash of
    `source` (one source always gets one name, two sources never share it), then its suffix."""
    p = PurePosixPath(path)
    if len(p.name.encode("utf-8", "surrogateescape")) <= limit:
        return path
    suffix = p.suffix if len(p.suffix) <= 8 else ""  # `a.<200 characters>` has no suffix to keep
    digest = hashlib.sha256(source.encode("utf-8", "surrogateescape")).hexdigest()[:HASH_CHARS]
    room = limit - len(f".{digest}{suffix}".encode())
    head = p.name[:len(p.name) - len(suffix)].encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return str(p.with_name(f"{head}.{digest}{suffix}"))


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


# Windows opens no path of more than 259 characters (MAX_PATH, 260 with the closing NUL) unless long paths are enabled
# both in its registry and in the program's manifest, which most tools (Explorer, older Python, annotation platforms)
# are not: a dataset written, or copied, there with a longer path loses those files with "not found".
WINDOWS_MAX_PATH = 260


def windows_length(path: str | Path) -> int:
    """How many characters Windows counts in `path` made absolute: UTF-16 code units (an emoji is two)."""
    return len(os.path.abspath(path).encode("utf-16-le", "surrogatepass")) // 2


def too_long_for_windows(roots: Iterable[Path]) -> tuple[int, Path, int] | None:
    """`(how many, the longest, its length)` of the files under `roots` (files or folders) whose absolute path Windows
    would not open (`WINDOWS_MAX_PATH`); None when every one fits."""
    over, longest = 0, (0, Path())
    for root in roots:
        files = [root] if root.is_file() else (Path(top) / name for top, _, names in os.walk(root) for name in names)
        for file in files:
            n = windows_length(file)
            if n >= WINDOWS_MAX_PATH:
                over += 1
                longest = max(longest, (n, file), key=lambda pair: pair[0])
    return (over, longest[1], longest[0]) if over else None


def long_paths_warning(roots: Iterable[Path],
                       advice: str = "Write into a folder nearer the root, or give the photos shorter names") -> str | None:
    """One warning naming the longest written path Windows would not open, and how many others, then `advice`; None
    when all fit."""
    found = too_long_for_windows(roots)
    if found is None:
        return None
    over, longest, n = found
    others = f" ({over - 1} more too)" if over > 1 else ""
    return (f"warning: {show_text(os.path.abspath(longest))} has {n} characters{others}, more than the "
            f"{WINDOWS_MAX_PATH - 1} Windows opens: copied there, such a file cannot be opened unless long paths are "
            f"enabled. {advice}")
