"""Who may write where: a command never writes onto one of its inputs, nor replaces a file it did not write.

Every command that writes files names, before any work, its inputs and what it will write: exact files,
and folders it fills with names it picks as it goes (pictures, checkpoints). Two rules follow:

- An output is never one of the inputs, nor a folder holding one, `--overwrite` or not. Paths are
  compared after resolving links, and existing files also by inode, so a symlink or a hard link to an
  input is caught as well.
- An output that is already there is replaced only when this same command wrote it (a re-run redoes or
  resumes its own work) or when the user passes `--overwrite`. What wrote what is kept in a small ledger,
  `.bbuvl-outputs.json`, in the folder that holds the output; a file inside a folder a command wrote
  belongs to that command too.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from bbuvl.atomic import write_text_atomic

LEDGER = ".bbuvl-outputs.json"


class OutputConflict(ValueError):
    """An output is one of the command's inputs, or is in the way and was not written by the command."""


def same_path(a: Path, b: Path) -> bool:
    """True when `a` and `b` name the same file or folder (links resolved; hard links compared by inode)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: then only the resolved names can match
        return False


def check_not_inputs(inputs: Mapping[str, Path | None], files: Iterable[Path] = (), folders: Iterable[Path] = ()) -> None:
    """Raise OutputConflict when an output is an input, or a folder written into holds one.

    `inputs` maps how the user gave each input (`--pred`, `DATASET`) to its path; None entries, and paths that
    do not exist (nothing to lose; the command reports them itself), are skipped.
    """
    given = {what: Path(p) for what, p in inputs.items() if p is not None and os.path.lexists(p)}
    for out in map(Path, files):
        if out.is_dir():
            raise OutputConflict(f"{out}: is a folder, expected a file name to write")
        for what, path in given.items():
            if same_path(out, path):
                raise OutputConflict(f"{out}: is also the input {what} ({path}); writing it would destroy the input. "
                                     "Choose another output")
    for folder in map(Path, folders):
        for what, path in given.items():
            if same_path(folder, path) or path.resolve().is_relative_to(folder.resolve()):
                raise OutputConflict(f"{folder}: holds the input {what} ({path}); writing into it could destroy "
                                     "the input. Choose another output folder")


def claim_outputs(command: str, inputs: Mapping[str, Path | None], files: Iterable[Path] = (),
                  folders: Iterable[Path] = (), overwrite: bool = False) -> list[tuple[Path, list[str]]]:
    """Check the outputs of one run of `bbuvl COMMAND`, then record them as its own; raises OutputConflict.

    Call it before any expensive work: nothing is written when it refuses. Outputs in folders that exist are
    recorded at once (a killed run can then be re-run over its own partial output); those in folders the
    command has yet to create are returned as `[(folder, names)]`, for `record_outputs` once the command has
    succeeded, so that a command that fails early leaves no folder behind.
    """
    files, folders = [Path(p) for p in files], [Path(p) for p in folders]
    check_not_inputs(inputs, files, folders)
    read = {what: Path(p) for what, p in inputs.items() if p is not None and Path(p).is_dir()}
    for path in files + folders:
        owner = writer_of(path) if _in_the_way(path) else command
        if owner == command:
            continue
        for what, folder in read.items():
            # Under a folder the command reads, what is already there is input, --overwrite or not.
            if path.resolve().is_relative_to(folder.resolve()):
                raise OutputConflict(f"{path}: is inside the input {what} ({folder}) and was not written by "
                                     f"`bbuvl {command}`; writing it would change the input. Choose another output")
        if not overwrite:
            by = f"by `bbuvl {owner}`" if owner else "by someone else"
            raise OutputConflict(f"{path}: exists and was not written by `bbuvl {command}` (written {by}); refusing to "
                                 "replace it. Pass --overwrite to replace it, or choose another output")
    by_folder: dict[Path, list[str]] = {}
    for path in files + folders:
        by_folder.setdefault(Path(os.path.abspath(path)).parent, []).append(path.name)
    later = []
    for folder, names in by_folder.items():
        if folder.is_dir():
            _record(folder, names, command)
        else:
            later.append((folder, names))
    return later


def record_outputs(command: str, pending: Iterable[tuple[Path, list[str]]]) -> None:
    """Record outputs that `claim_outputs` left for later as written by `bbuvl COMMAND` (their folders exist now)."""
    for folder, names in pending:
        if folder.is_dir():
            _record(folder, names, command)


def writer_of(path: Path) -> str | None:
    """The command recorded as having written `path` (or a folder holding it); None when no ledger names one."""
    path = Path(os.path.abspath(path))
    for child in [path, *path.parents]:
        if child.parent == child:
            return None
        owner = _read_ledger(child.parent).get(child.name)
        if owner is not None:
            return owner
    return None


def _in_the_way(path: Path) -> bool:
    """True when writing `path` would replace something: it exists and is not an empty file or folder."""
    if not os.path.lexists(path):
        return False
    if path.is_dir():
        return any(p.name != LEDGER for p in path.iterdir())
    return not path.is_file() or path.stat().st_size > 0


def _read_ledger(folder: Path) -> dict[str, str]:
    try:
        data = json.loads((folder / LEDGER).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none, unreadable or damaged: nothing there is known to be ours
        return {}
    written = data.get("written_by") if isinstance(data, dict) else None
    return {k: v for k, v in written.items() if isinstance(v, str)} if isinstance(written, dict) else {}


def _record(folder: Path, names: list[str], command: str) -> None:
    with _ledger_lock(folder):  # two commands writing into one folder at once must not drop each other's entries
        ledger = _read_ledger(folder)
        if all(ledger.get(name) == command for name in names):
            return
        ledger.update(dict.fromkeys(names, command))
        write_text_atomic(folder / LEDGER, json.dumps({"written_by": dict(sorted(ledger.items()))},
                                                      ensure_ascii=False, indent=1) + "\n")


@contextmanager
def _ledger_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder` itself (no lock file left behind) while its ledger is read and replaced."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
