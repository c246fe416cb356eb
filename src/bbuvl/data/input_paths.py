"""Input file names: found however their letters were composed, and never read from outside their folder.

A name written in one place and a file created in another may spell the same letters differently: macOS
stores names decomposed (NFD), JSON written elsewhere holds them composed (NFC). `find_file` finds the file
either way. An importer that copies what a foreign annotation file names (`../../etc/passwd`, an absolute
path, a link inside the folder that points out of it) must not copy anything outside the folder the user
gave it; `file_inside` refuses such a name unless the user allows it.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from bbuvl.data.text import LOCALE_FIX, file_name_key, file_names_in_utf8, not_text, show_text
from bbuvl.paths import real_path


class OutsideFolderError(ValueError):
    """A file name that resolves outside the folder it must stay in."""


def _exists(path: Path) -> bool:
    """`path.exists()`, False for a name no file can have (too long for the system, a NUL in it) instead of raising."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def find_file(path: Path) -> Path:
    """`path` as given when it exists (or is plain ASCII), else with each part matched to the disk's by NFC."""
    if str(path).isascii() or _exists(path):
        return path
    found = Path(path.anchor)
    for part in path.parts[1:] if path.anchor else path.parts:
        candidate = found / part
        if not _exists(candidate) and found.is_dir():
            key = file_name_key(part)
            try:
                candidate = next((found / n for n in os.listdir(found) if file_name_key(n) == key), candidate)
            except OSError:  # unreadable folder: report the name as given
                pass
        found = candidate
    return found if _exists(found) else path


def file_inside(path: Path, folder: Path, allow_outside: bool = False) -> Path:
    """The existing file `path` names (see `find_file`); OutsideFolderError when it resolves outside `folder`.

    Links are followed before the check, so a link inside `folder` to a file outside it is outside.
    """
    path = find_file(path)
    if "\0" in str(path):  # a name from a foreign file: resolve() would fail on it with "embedded null byte"
        raise ValueError(f"{show_text(path.as_posix())}: no file name holds a NUL character")
    real, root = real_path(path), real_path(folder)
    if not allow_outside and not real.is_relative_to(root):
        how = f" (which resolves to {real})" if real != Path(os.path.abspath(path)) else ""
        raise OutsideFolderError(
            f"{show_text(path.as_posix())}{how} is outside the images folder {root}; nothing outside it is read "
            f"unless you pass --allow-outside"
        )
    return path


# What `file_kind` says of a path where nothing is: a writer may create a file there, and a reader's own error
# ("image file not found") names it better than "not a regular file".
NOTHING_THERE = frozenset({"no such file", "a link that reaches no file"})


def file_kind(path: Path) -> str | None:
    """None when `path` is a regular file (links followed), else what it is, as a phrase: "a folder", "a FIFO (named
    pipe)", "a device", "a socket", "a link that reaches no file" or "no such file". Opening a pipe waits for a writer
    forever and a device such as /dev/zero reads without end, so none of them may pass for a missing or empty file."""
    tests = (("a folder", path.is_dir), ("a FIFO (named pipe)", path.is_fifo), ("a device", path.is_char_device),
             ("a device", path.is_block_device), ("a socket", path.is_socket),
             ("a link that reaches no file", path.is_symlink))
    try:
        if path.is_file():
            return None
        return next((what for what, test in tests if test()), "no such file")
    except (OSError, ValueError):  # a name too long for the system, or a NUL in it
        return "no such file"


def name_problem(path: Path) -> str | None:
    """Why no file on this system can have `path`'s name (a NUL in it, or longer than the system allows), as a
    phrase; None for a name a file can have, there or not. Open's own OSError names the path alone."""
    if "\0" in str(path):  # a name from data (a dataset line, a COCO entry), not from the disk
        return "no file name holds a NUL character"
    try:
        os.stat(path)
    except UnicodeEncodeError:  # data check ended in this traceback
        return unspellable(path)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return "a file name longer than this system allows"
    return None


def unspellable(path: str | os.PathLike[str]) -> str | None:
    """Why this system cannot turn `path` into a file name's bytes, as a phrase: a character its file-name encoding
    lacks (`红` in LC_ALL=C with PYTHONUTF8=0, or in en_US.ISO-8859-1); None when it can."""
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return (f"a name this system's file-name encoding ({sys.getfilesystemencoding()}) cannot spell, so no file of "
                f"that name can be opened or written here: {LOCALE_FIX}")
    return None


def model_files_path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the libraries that read and write a model folder's files cannot do so under `path`, as a phrase; None when
    they can. tokenizers and safetensors, written in Rust, open a file by the UTF-8 bytes of its name: a name of bytes
    that are not UTF-8 they refused with a codec error, and a name this system spells otherwise (zh_CN.GBK) they looked
    for as other bytes ("No such file or directory (os error 2)", "is not valid UTF-8"), which was blamed on an intact
    tokenizer.json as if it were damaged."""
    text = os.fspath(path)
    if (problem := not_text(text)) is not None:
        return f"the tokenizers and safetensors libraries open a model's files only by names in UTF-8, and {problem}"
    if file_names_in_utf8() or text.isascii():
        return None
    try:
        if os.fsencode(text) == text.encode("utf-8"):
            return None
    except UnicodeEncodeError:
        pass
    return (f"this system spells file names in {sys.getfilesystemencoding()}, and the tokenizers and safetensors "
            "libraries open a model's files by the UTF-8 bytes of their names, so they would look for other names than "
            "these; give a path of ASCII characters (a link made with `ln -s` will do), or rename it in UTF-8 and "
            f"{LOCALE_FIX}")


def spelling_note(path: str | os.PathLike[str]) -> str:
    """For a file not found: '; ...' saying why when this system reads file names in another encoding than UTF-8 and
    the name is one it cannot spell, or the file is there under its name's UTF-8 bytes (a dataset made in a UTF-8
    locale, read in zh_CN.GBK: `红.jpg` was looked for as GBK bytes); '' otherwise."""
    text = os.fspath(path)
    if file_names_in_utf8() or text.isascii():
        return ""
    if (why := unspellable(text)) is not None:
        return f"; it is {why}"
    try:
        folder, name = os.path.split(text)
        utf8 = [text.encode("utf-8"), os.path.join(os.fsencode(folder), name.encode("utf-8"))]
    except UnicodeEncodeError:  # a name of bytes that are not UTF-8: not_text's to say
        return ""
    if not any(os.path.lexists(candidate) for candidate in utf8):
        return ""
    return (f"; the file is there under the UTF-8 bytes of its name, but this system spells file names in "
            f"{sys.getfilesystemencoding()}: {LOCALE_FIX}")


def require_folder(path: Path, what: str) -> Path:
    """`path` when it is a folder; ValueError naming it, and `what` it should be, when it is a file or is missing."""
    if not path.is_dir():
        raise ValueError(f"{path}: " + (f"a file; give {what}" if path.exists() else f"no such folder ({what})"))
    return path
