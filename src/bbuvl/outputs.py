"""Who may write where: a command never writes onto one of its inputs, never replaces a file it did not write,
and never shares an output with another process.

Every command that writes files names, before any work, its inputs and what it will write: exact files,
and folders it fills with names it picks as it goes (pictures, checkpoints). Three rules follow:

- An output is never one of the inputs, nor a folder holding one, nor inside an input folder, `--overwrite` or
  not. Paths are compared after resolving links, and existing files also by inode, so a symlink or a hard link
  to an input is caught as well.
- An output is owned by its content, not its name. When a command succeeds it records, for each output it
  wrote, a SHA-256 of what it wrote (for a folder, of every file under it) in a small ledger,
  `.bbuvl-outputs.json`, in the folder that holds the output. An output that is already there is replaced
  only when the same command wrote exactly what is there now (a re-run redoes its own work) or when the user
  passes `--overwrite`: a file edited by hand since is nobody's. A run that fails records only what it
  did write, never what it merely claimed. A folder a command replaces whole (a model folder) is given up by
  `--overwrite` only when that command wrote it (`check_replaced_whole`): all of someone else's would go with it.
- One output, one process: each output is locked (flock on a `.NAME.lock` file beside it, holding the pid, the
  command, the host and the pid namespace) from the claim to the end of the command; a second writer is refused naming
  the first. Whether a lock is this process's own is whether it holds it, never its pid: in containers every bbuvl is
  pid 1. Within a process a lock is its thread's: the thread that took it may take it again (a command's claim and the
  library code it calls), any other thread is refused as another process would be, naming it.
  The kernel drops the lock when its holder dies, even by SIGKILL, so a killed run leaves no stale lock. Its lock
  file stays (a run that ends removes its own), naming the command: the output was claimed by that command (its
  own, or given up with --overwrite) and half written when it died, unrecorded. So the next run of the same command
  takes what is there as its own and redoes it; any other command, and anything without such a file, is refused.
  A free lock tells that its holder ended only on the kernel that took it: one whose file names a writer of a kernel
  this machine cannot check (another machine's, over NFS whose locks stay on each machine) is refused, never taken
  (`LockLine.checkable_here`).
- A reader is respected: every command registers what it reads, for as long as it runs, in a per-user registry outside
  it (`register_reading`), and a writer that would replace or delete a path a live reader holds (it, a folder holding
  it, a file under it) refuses, naming the reader (`refuse_outputs_being_read`). A reading is its thread's: another
  thread of the process that would replace it is refused too, and a claim adopts only its own thread's.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping

from bbuvl.atomic import (WriteFailed, refuse_current_folder, remove_dead_writers_temporaries, remove_left_temporaries,
                          remove_path, temporary_folder, temporary_name, temporary_name_bytes, temporary_of,
                          write_text_atomic, written_path)
from bbuvl.clock import local_time
from bbuvl.paths import real_path

log = logging.getLogger(__name__)

LEDGER = ".bbuvl-outputs.json"
LOCK_SUFFIX = ".lock"


class OutputConflict(ValueError):
    """An output is one of the command's inputs, is in the way and was not written by the command, or is busy."""


def same_path(a: Path, b: Path) -> bool:
    """True when `a` and `b` name the same file or folder (links resolved; hard links compared by inode)."""
    if real_path(a) == real_path(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: then only the resolved names can match
        return False


def check_not_inputs(inputs: Mapping[str, Path | None], files: Iterable[Path] = (), folders: Iterable[Path] = ()) -> None:
    """Raise OutputConflict when an output is an input, a folder written into holds one, or an output lies
    inside an input folder (what a command writes there would be read as input next time).

    `inputs` maps how the user gave each input (`--pred`, `DATASET`) to its path; None entries, and paths that
    do not exist (nothing to lose; the command reports them itself), are skipped.
    """
    given = {what: Path(p) for what, p in inputs.items() if p is not None and os.path.lexists(p)}
    files, folders = [Path(p) for p in files], [Path(p) for p in folders]
    for out in files:
        if out.is_dir():
            raise OutputConflict(f"{out}: is a folder, expected a file name to write")
        for what, path in given.items():
            if same_path(out, path):
                raise OutputConflict(f"{out}: is also the input {what} ({path}); writing it would destroy the input. "
                                     "Choose another output")
    for folder in folders:
        for what, path in given.items():
            if same_path(folder, path) or real_path(path).is_relative_to(real_path(folder)):
                raise OutputConflict(f"{folder}: holds the input {what} ({path}); writing into it could destroy "
                                     "the input. Choose another output folder")
    for out in files + folders:
        for what, path in given.items():
            if path.is_dir() and real_path(out).is_relative_to(real_path(path)):
                raise OutputConflict(f"{out}: is inside the input {what} ({path}); what is written there would be "
                                     "read as input, or replace it. Choose an output outside it")


def check_distinct(outputs: Iterable[Path]) -> None:
    """Raise OutputConflict when two outputs of one command are one file, or one lies inside another (`--out` named
    inside `--report`): the second write would replace the first."""
    seen: list[tuple[Path, Path]] = []
    for out in map(Path, outputs):
        real = real_path(out)
        for other, other_real in seen:
            if real == other_real or real.is_relative_to(other_real) or other_real.is_relative_to(real):
                raise OutputConflict(f"{out} and {other}: one command would write both, and one is (or holds) the "
                                     "other; choose outputs apart")
        seen.append((out, real))


def check_not_special(given: Path) -> None:
    """Raise OutputConflict when output `given` (its links followed) is a device, a named pipe or a socket: an atomic
    write renames a new file over it, and `--json /dev/null --overwrite` replaced the system's /dev/null, as root,
    with a JSON file. A folder or a file (or nothing yet) passes."""
    try:
        mode = os.stat(given).st_mode
    except (OSError, ValueError):  # nothing there (or a name no file can have): the command names it itself
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "a named pipe" if stat.S_ISFIFO(mode) else "a socket")
    raise OutputConflict(f"{given}: {kind}, not a file: writing it would replace it with a file (--overwrite too); "
                         "choose a file name, or leave the option out to write nothing")


def check_not_bookkeeping(out: Path, given: Path) -> None:
    """Raise OutputConflict when output `out` has a name this module keeps its own records under: the ledger (a
    command wrote its output there, then the ledger over it: "wrote" a file holding no output), a lock file (the next
    run of the output it locks truncates and removes it) or a writer's temporary (removed as a dead writer's); or the
    name of the manifest of predictions lying beside it (`manifest_of`)."""
    if _bookkeeping(out.name) or temporary_name().fullmatch(out.name):
        raise OutputConflict(f"{given}: bbuvl keeps its own records under names like this one (the outputs ledger "
                             f"{LEDGER}, lock files .NAME{LOCK_SUFFIX}, temporaries .NAME.PID.*.tmp), and would replace "
                             "or remove what is written there; choose another name")
    if (predictions := manifest_of(out)) is not None:
        raise OutputConflict(f"{given}: is the manifest of the predictions in {predictions.name} beside it, which says "
                             "what made their lines (their input, checkpoint and settings); written over, with "
                             "--overwrite too, they would be read as another tool's, resumed and judged by no record or "
                             "by another's. Choose another name")


# The name `bbuvl predict` keeps a predictions file's manifest under, after the file's own (infer/output.py).
PREDICT_MANIFEST_SUFFIX = ".predict.json"


def manifest_of(out: Path) -> Path | None:
    """The predictions file whose manifest `out` is by its name (`P.predict.json` beside `P`, or beside a sharded run's
    part `P.rank1-of-2`), when that file holds lines; None otherwise. `eval --out b.jsonl.predict.json --overwrite`
    and `predict -o b.jsonl.predict.json --overwrite` replaced b.jsonl's manifest with metrics or predictions, and
    b.jsonl was then resumed and judged as a file no run had recorded."""
    if not out.name.endswith(PREDICT_MANIFEST_SUFFIX) or out.name == PREDICT_MANIFEST_SUFFIX:
        return None
    predictions = out.with_name(out.name.removesuffix(PREDICT_MANIFEST_SUFFIX))
    try:
        st = os.stat(predictions)
    except (OSError, ValueError):  # nothing there (or no name a file can have): no lines a manifest speaks for
        return None
    return predictions if stat.S_ISREG(st.st_mode) and st.st_size > 0 else None


def name_max(path: Path) -> int:
    """The longest file name, in bytes, that the file system which would hold `path` allows (its nearest existing
    folder's; 255 where it does not say)."""
    return _pathconf(path, "PC_NAME_MAX", 255)


def path_max(path: Path) -> int:
    """The longest path, in bytes, a file call takes on the file system which would hold `path` (PATH_MAX less the
    closing NUL it counts; 4095 where it does not say)."""
    return _pathconf(path, "PC_PATH_MAX", 4096) - 1


def _pathconf(path: Path, name: str, default: int) -> int:
    """`os.pathconf` of the nearest existing folder holding `path`, `default` where it does not say."""
    folder = next((p for p in Path(os.path.abspath(path)).parents if p.is_dir()), Path("/"))
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError):
        return default


def check_name_room(out: Path, given: Path, file: bool = True, beside: Iterable[Path] = ()) -> None:
    """Raise OutputConflict when a temporary name written beside output `out` (atomic.py), or beside a file named
    after it (`beside`: eval's METRICS.coco.json beside --out's METRICS.json), is longer than its file system allows,
    or its path longer than a path may be: a name a few bytes short of the limit was taken, and the run failed at its
    very end, its work lost. The refusal says how long `given`, the name typed, may be for every one of them to fit."""
    out = Path(os.path.abspath(out))  # not where a link leads: looking would fail on a name past the limit
    written = [(out, temporary_name_bytes(out, file)), *((b, temporary_name_bytes(b)) for b in beside)]
    widest, longest = max(written, key=lambda w: w[1])
    what = "writing it" if widest == out else f"writing {widest.name} beside it"
    name, limit = len(os.fsencode(out.name)), name_max(out)
    if longest > limit:
        raise OutputConflict(f"{given}: a name of {name} bytes, and {what} takes a temporary name of {longest} bytes, "
                             f"past the {limit} this file system allows; choose a name of at most "
                             f"{name - (longest - limit)} bytes")
    whole, room = len(os.fsencode(str(out))), path_max(out)
    if (temporary := whole - name + longest) > room:  # its folder's path, then the temporary's name
        raise OutputConflict(f"{given}: a path of {whole} bytes from the root, and {what} takes a temporary at a path "
                             f"of {temporary} bytes, past the {room} a path may have here; choose a path of at most "
                             f"{room - (longest - name)} bytes from the root (a folder nearer the root, or shorter "
                             "names)")


def output_digest(path: Path) -> str | None:
    """SHA-256 of what is at `path`: a file's bytes, or every file under a folder (names and bytes; links as
    their targets, not followed); None when nothing is there to lose (missing, an empty file or folder)."""
    path = Path(path)
    if not os.path.lexists(path):
        return None
    if path.is_symlink():
        return hashlib.sha256(b"link\0" + os.readlink(path).encode("utf-8", "surrogateescape")).hexdigest()
    if path.is_file():
        if path.stat().st_size == 0:
            return None
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    if not path.is_dir():
        return hashlib.sha256(b"special\0" + str(path.stat().st_mode).encode()).hexdigest()
    total, seen = hashlib.sha256(), False
    for child in _content(path):
        seen = True
        total.update(child.relative_to(path).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        total.update((output_digest(child) or "empty").encode() + b"\n")
    return total.hexdigest() if seen else None


def _content(folder: Path) -> list[Path]:
    """Every file (and link) under `folder`, sorted: what its digest covers, ledger and lock files left out."""
    return [child for child in sorted(folder.rglob("*"))
            if not _bookkeeping(child.name) and not (child.is_dir() and not child.is_symlink())]


def output_path(path: str | Path) -> Path:
    """The one name of an output, however it was given: absolute, and the file it names when it is a link (what its
    lock, its ledger entry and its owner are kept under)."""
    return Path(os.path.abspath(written_path(path)))


def writer_of(path: Path) -> str | None:
    """The command that wrote what is at `path` now (or a folder holding it): None when no ledger names one, or
    when the content changed since that command wrote it."""
    path = output_path(path)
    for child in [path, *path.parents]:
        if child.parent == child:
            return None
        entry = _read_ledger(child.parent).get(child.name)
        if entry is not None:
            command, digest = entry
            return command if digest == output_digest(child) else None
    return None


@dataclass
class Claim:
    """The outputs one run of a command holds: locked until `finish`, recorded (by content) only as written."""

    command: str
    outputs: list[Path]
    before: dict[Path, str | None]  # each output's digest when it was claimed
    locks: list["OutputLock"] = field(default_factory=list)
    record: bool = True  # False: the command keeps its own record of what is its (predict's manifest, train's run folder)
    done: bool = False
    readings: list["Reading"] = field(default_factory=list)  # the command's inputs, read until it ends
    listed: set[Path] = field(default_factory=set)  # folders recorded with the names of their files (`claim_outputs`)

    def finish(self, succeeded: bool) -> None:
        """Record what this run wrote and release the outputs.

        After success every output that is there is recorded as the command's; after a failure only those whose
        content this run changed (they hold its bytes, and a re-run may redo them), never one it merely claimed. A
        failed run leaves a killed run's lock file it found on an output it did not change as it was, so that the
        next run of that command may still redo it. What cannot be read or written here (a full disk, no file
        descriptor left) is a warning: the locks and readings are released all the same, and the error that ended
        the command stays the one it reports.
        """
        if self.done:
            return
        self.done = True
        recorded: set[Path] = set()
        try:
            if self.record:
                recorded = self._record_written(succeeded)
        finally:
            self.release(keep_found=lambda out: not succeeded and out not in recorded)

    def _record_written(self, succeeded: bool) -> set[Path]:
        """Record, by content, what this run wrote (`finish`); returns the outputs recorded."""
        by_folder: dict[Path, dict[str, str | None]] = {}
        for out in self.outputs:
            try:
                now = output_digest(out)
            except OSError as e:  # unread, it is not known to be this run's: left nobody's, the safe side to err on
                log.warning("%s; what `bbuvl %s` wrote there is not recorded as its own (a re-run will need "
                            "--overwrite)", _said(e, out), self.command)
                continue
            if succeeded or now != self.before.get(out):
                by_folder.setdefault(out.parent, {})[out.name] = now
        recorded: set[Path] = set()
        for folder, digests in by_folder.items():
            if folder.is_dir():
                try:
                    _record(folder, digests, self.command, self.listed)
                    recorded.update(folder / name for name in digests)
                except OSError as e:  # a full disk: unrecorded outputs are nobody's, the safe side to err on
                    log.warning("%s; what `bbuvl %s` wrote there is not recorded as its own (a re-run will "
                                "need --overwrite)", _said(e, folder / LEDGER), self.command)
        return recorded

    def release(self, keep_found: Callable[[Path], bool] = lambda out: True) -> None:
        """Let go of every lock (one whose output `keep_found(output)` says gets back a killed run's line it found)
        and every reading, each whatever the others do (a failure is a warning naming its file), then try again to
        remove the temporaries a failed write could not (atomic.py): what was let go may be what that lacked."""
        for out, lock in reversed(list(zip(self.outputs, self.locks))):
            try:
                lock.release(restore=keep_found(out))
            except OSError as e:  # its file is closed and the kernel's lock gone: only the line in it is wrong
                log.warning("%s; the lock file of %s could not be put back as it was found", _said(e, lock.path), out)
        for reading in self.readings:
            try:
                reading.release()
            except OSError as e:  # a registry file left: the next writer that looks removes it as a dead reader's
                log.warning("%s; this command's registration as a reader is left until the next writer looks",
                            _said(e, reading.file))
        remove_left_temporaries()

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        self.finish(succeeded=kind is None)


@dataclass(frozen=True)
class Writer:
    """The command whose lock file lies beside an input: its pid, its name, and whether it is running now."""

    pid: str
    command: str
    running: bool
    output: Path | None = None  # what its lock names, when found by `writer_around`: the path, a folder holding it, or one under it
    host: str = ""  # its machine and pid namespace, as its lock line records them ('' in a lock of an earlier version)
    pidns: str = ""
    thread: str = ""  # the name of the thread of this process that holds it ('' for another process's)

    @property
    def who(self) -> str:
        """'pid N', with its machine or pid namespace where they are not this process's (`process_named`), or 'thread
        NAME of this process, pid N' for another thread's."""
        return thread_named(self.thread) if self.thread else process_named(self.pid, self.host, self.pidns)


def thread_named(name: str) -> str:
    """'thread NAME of this process, pid N': a holder or reader that is another thread of this process."""
    return f"thread {name!r} of this process, pid {os.getpid()}"


def writer_at(path: Path) -> Writer | None:
    """The writer named by `path`'s lock file, None without one (or an empty one: a writer that ended)."""
    try:
        fh = _lock_file_to_read(lock_path(path))
    except (OSError, ValueError):  # no lock file, or no name to keep one beside: nobody writes it
        return None
    if fh is None:
        return None
    with fh:
        try:
            # Shared and at once: a running writer holds it exclusive; another reader's probe does not block ours.
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            running = False
        except BlockingIOError:
            running = True
        except OSError:
            return None
        # This thread's own claim (a library caller that wrote it first) is the lock it holds, never a pid: in a
        # container every bbuvl is pid 1, and another container's `bbuvl train` was taken for this process itself.
        # Another thread's is another writer: a notebook's second run wrote into the file its first was writing.
        if running and (held := _holding_of(fh)) is not None:
            if held.ours:
                return None
            return Writer(str(os.getpid()), held.lock.command, True, thread=held.thread.name)
        line = LockLine.parse(fh.read())
    if not running and not line.command:
        return None  # a writer that ended
    return Writer(line.pid or "unknown", line.command or "command", running, host=line.host, pidns=line.pidns)


def _lock_file_to_read(path: Path) -> Any:
    """Lock file `path` opened to read, or None where it is no file (a symbolic link, a FIFO), which no writer takes
    (`OutputLock`): opened as a file, a FIFO under a lock's name hung every command that looked for a writer of the
    output beside it (`eval --pred a.jsonl` with a FIFO `.a.jsonl.lock`) until it was killed. OSError when there is
    none."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "r", encoding="utf-8", errors="replace")


def _holding_of(fh: Any) -> "_Holding | None":
    """This process's hold (`_HELD`) of the lock file open as `fh` (the same inode), None when it holds none."""
    with _HELD_GUARD:
        return _find_holding(fh)


# A checkpoint's choices, each written whole at once (`atomic.write_text_atomic`) by `bbuvl choose-tiles` and `eval
# --choose-thresholds` beside the model, which they leave as it is (data/scale.py, data/faults.py name them).
CHOICE_FILES = frozenset({"tile_scale.json", "verdict_thresholds.json", "verdict_thresholds_tiled.json"})


def writer_around(path: Path) -> Writer | None:
    """The running writer of `path`, of a folder holding it, or (`path` a folder) of anything under it, with the output
    its lock names; None when no other process writes any of them.

    A writer owns all it writes into: `bbuvl train` holding `run/` saves `run/final/` and `run/checkpoint-N/` and
    deletes old checkpoints, without a lock of their own; `data convert` holding `out/` writes `out/train.jsonl`. A
    lock on the exact path alone let a reader load a checkpoint half saved. A stale lock (a killed writer's) is not
    looked for around `path`: `writer_at` names it for the path itself. A choice being written into a folder
    (`CHOICE_FILES`) leaves the folder whole: a reader sees the earlier choice or the new one, each whole, and `make
    demo` scores a checkpoint while its tile scale is chosen.
    """
    try:
        located = real_path(Path(path))
    except (OSError, ValueError):  # a link loop, a name no file can have: the command names it itself
        return None
    for where in (located, *(folder for folder in located.parents if folder.parent != folder)):
        if (writer := writer_at(where)) is not None and writer.running:
            return replace(writer, output=where)
    if not located.is_dir():
        return None
    for lock in sorted(located.rglob(f".*{LOCK_SUFFIX}")):
        where = lock.with_name(lock.name[1:-len(LOCK_SUFFIX)])
        if where.name in CHOICE_FILES:
            continue
        if lock.is_file() and (writer := writer_at(where)) is not None and writer.running:
            return replace(writer, output=where)
    return None


def refuse_inputs_being_written(inputs: Mapping[str, Path | None]) -> None:
    """OutputConflict naming the first input another process is writing now (it, a folder holding it, or something in
    it: `writer_around`), and what to do: a reader would read a file still growing line by line, or a checkpoint
    about to be replaced, so its numbers would describe a moment of another run.

    The inputs are registered as read first (`register_reading`), then their writers looked for: of a reader and a
    writer that start at once, at least one sees the other, as of two writers (`OutputLock.acquire`)."""
    reading = register_reading(inputs)
    try:
        _refuse_writers(inputs)
    except BaseException:
        reading.release()
        raise


def _refuse_writers(inputs: Mapping[str, Path | None]) -> None:
    """OutputConflict naming the first input another process is writing now (`refuse_inputs_being_written`)."""
    for what, path in inputs.items():
        if path is None or (writer := writer_around(path)) is None:
            continue
        by = f"`bbuvl {writer.command}` ({writer.who})"
        located = real_path(Path(path))
        if writer.output is None or writer.output == located:
            raise OutputConflict(f"{path} ({what}): {by} is still writing it, so it is not whole yet; wait for that "
                                 "command to finish, then run this one again")
        if located.is_relative_to(writer.output):
            # A copy helps only where the user names the input (`-c`); one read through another (--pred's checkpoint) not
            copy = f", or copy {path} out of {writer.output} and give the copy as {what}" if " " not in what else ""
            raise OutputConflict(f"{path} ({what}): lies in {writer.output}, which {by} is writing now and may replace "
                                 f"or delete it while this command reads it; wait for that command to finish{copy}")
        raise OutputConflict(f"{path} ({what}): {by} is writing {writer.output} inside it, so it is not whole yet; "
                             "wait for that command to finish, then run this one again")


# Readers: a command that reads an input says so, outside that input, for as long as it runs, so that a writer which
# would replace or delete it refuses instead (docs/outputs.md, "Readers"). A served checkpoint was replaced by
# `train --overwrite` under a running `bbuvl serve`, which went on answering with weights no longer on disk.
READERS_ENV = "BBUVL_READERS_DIR"
READER_PREFIX = "reader-"


def readers_dir() -> Path:
    """The per-user folder where running readers register: $BBUVL_READERS_DIR, else bbuvl/readers in the user's cache
    (a read folder is never written into: it may be read-only, or someone else's)."""
    if given := os.environ.get(READERS_ENV):
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bbuvl" / "readers"


@dataclass(frozen=True)
class Reader:
    """A running command that reads `path` (a real path): its pid, its command and when it started."""

    pid: str
    command: str
    started: str
    path: Path
    inode: tuple[int, int] | None = None  # (device, inode) of what it read, found again after a move
    host: str = ""  # its machine and pid namespace, as its entry records them ('' where it does not)
    pidns: str = ""
    thread: str = ""  # the name of the thread of this process that registered it ('' for another process's)

    @property
    def who(self) -> str:
        """'pid N', with its machine or pid namespace where they are not this process's (`process_named`), or 'thread
        NAME of this process, pid N' for another thread's."""
        return thread_named(self.thread) if self.thread else process_named(self.pid, self.host, self.pidns)


class Reading:
    """One registration of a running reader: a file in `readers_dir()` naming the paths it reads, flock-ed while it
    lives. The kernel drops the flock when the process dies, even by SIGKILL, so a killed reader's file reads as dead
    (as a killed writer's lock does) and is removed by whoever looks next."""

    def __init__(self, command: str, paths: Iterable[Path]):
        self.command = command
        self.paths = sorted({str(real_path(Path(p))) for p in paths})
        self.file: Path | None = None
        self._fh: Any = None
        self._pins: list[int] = []
        # The thread reading: to it alone the registration is its own (a writer may replace what its thread read)
        self.thread = threading.current_thread()

    def acquire(self) -> "Reading":
        """Register; a registry that cannot be written (a read-only home) is a warning, never a refusal to read."""
        if not self.paths:
            return self
        fh, name = None, ""
        try:
            folder = readers_dir()
        except RuntimeError as e:  # no home (a uid without a passwd entry, $HOME unset)
            log.warning("cannot register this command as a reader of its inputs (%s); a writer will not see it (set "
                        "%s to a writable folder)", e, READERS_ENV)
            return self
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Written under a name no writer looks at, locked, then renamed: a writer never sees it unlocked and alive.
            fd, name = tempfile.mkstemp(prefix=".new-", suffix=".json", dir=folder)
            fh = os.fdopen(fd, "w", encoding="utf-8")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "pidns": pid_namespace(), "command": self.command,
                       "started": local_time(),  # read on other machines sharing the registry: its offset says when
                       "paths": self.paths, "inodes": [self._pin(Path(p)) for p in self.paths]}, fh,
                      ensure_ascii=True)  # a path of bytes that are no UTF-8 (a GBK folder) holds surrogates: escaped
            fh.flush()
            file = folder / f"{READER_PREFIX}{os.getpid()}-{Path(name).stem.removeprefix('.new-')}.json"
            os.rename(name, file)
            self.file = file
        except OSError as e:
            self._unpin()
            if fh is not None:  # a full disk: what was begun goes
                fh.close()
                Path(name).unlink(missing_ok=True)
            if folder not in _UNWRITABLE:  # once: a command registers its inputs in a few calls
                _UNWRITABLE.add(folder)
                log.warning("%s: cannot register this command as a reader of its inputs (%s); a writer will not see "
                            "it (set %s to a writable folder)", folder, e.strerror or e, READERS_ENV)
            return self
        self._fh = fh
        _READING[self.file] = self
        return self

    def release(self) -> None:
        """Unregister (the file goes while still locked, so no writer reads it as a dead reader's meanwhile)."""
        with _READING_GUARD:
            if self in _PENDING:
                _PENDING.remove(self)
        if self.file is None or _READING.pop(self.file, None) is None:
            return
        try:
            self.file.unlink(missing_ok=True)
        finally:  # its lock let go and its inodes unpinned even so: a file left is a dead reader's to the next writer
            self._fh.close()
            self._unpin()

    def _pin(self, path: Path) -> tuple[int, int] | None:
        """(device, inode) of `path`, held open for as long as this registration lives: a folder deleted meanwhile
        keeps its inode number, which the file system would otherwise give to a new file elsewhere, and a writer
        looking for where a moved input went (`reader_around`) would find that stranger and refuse it."""
        try:
            fd = os.open(path, getattr(os, "O_PATH", os.O_RDONLY))
        except OSError:  # gone, or unreadable: nothing to find again after a move
            return None
        self._pins.append(fd)
        found = os.fstat(fd)
        return found.st_dev, found.st_ino

    def _unpin(self) -> None:
        """Let go of the inodes `_pin` held."""
        while self._pins:
            os.close(self._pins.pop())


# registry file -> this process's live registration
_READING: dict[Path, Reading] = {}
# registries this process could not write into, said once
_UNWRITABLE: set[Path] = set()


def register_reading(inputs: Mapping[str, Path | str | None], command: str | None = None) -> Reading:
    """Register this process as a reader of `inputs` (those that exist) for as long as it runs, or until the command's
    next claim (`claim_outputs`, `hold_outputs`) is finished: the claim adopts it, so a process that runs many commands
    (tests, a notebook) reads each command's inputs for that command only."""
    reading = Reading(command or _command_line(), [Path(p) for p in inputs.values()
                                                    if p is not None and os.path.lexists(p)]).acquire()
    if reading.file is not None:
        with _READING_GUARD:
            _PENDING.append(reading)
    return reading


def _command_line() -> str:
    """`bbuvl serve`, `bbuvl data synth`: the command words this process was started with (its arguments up to the
    first option or path), else the program's name (a test runner)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c") else Path("python")
    if program.name != "bbuvl" and not (program.name == "__main__.py" and program.parent.name == "cli"):
        return program.name  # `pytest`, or `python` for `python -c` (a test worker)
    words = []
    for word in sys.argv[1:3]:
        if not word.replace("-", "").isalpha() or word.startswith("-"):
            break
        words.append(word)
    return " ".join(["bbuvl", *words])


# Registered since the last claim of their thread: its next claim releases them when it is finished. Each thread's
# are its own: a claim on another thread adopted them, and dropped them while their reader still read.
_PENDING: list[Reading] = []
_READING_GUARD = threading.Lock()


def _adopt_readings(claim: "Claim") -> None:
    """Hand the registrations this thread made since its last claim to `claim`, which releases them when it is
    finished."""
    claim.readings.extend(_pending_of_this_thread())


def release_readings() -> None:
    """Release what this thread registered as read and no claim adopted (a command that ends without claiming)."""
    for reading in reversed(_pending_of_this_thread()):
        reading.release()


def _pending_of_this_thread() -> list[Reading]:
    """This thread's registrations no claim adopted yet, taken out of `_PENDING`."""
    with _READING_GUARD:
        mine = [r for r in _PENDING if r.thread is threading.current_thread()]
        _PENDING[:] = [r for r in _PENDING if r.thread is not threading.current_thread()]
    return mine


def live_readers() -> Iterator[Reader]:
    """Every path another live process, or another thread of this one, registered as read, removing dead readers'
    files on the way."""
    try:
        names = sorted(readers_dir().glob(f"{READER_PREFIX}*.json"))
    except (OSError, RuntimeError):  # no home to find the registry in: no reader could register there either
        return
    for name in names:
        own = _READING.get(name)
        if own is not None and own.thread is threading.current_thread():
            continue  # this thread's own: a command may replace what it read itself (its own earlier output)
        try:
            fh = name.open("r", encoding="utf-8", errors="replace")
        except OSError:  # gone meanwhile: released
            continue
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    entry = json.loads(fh.read())
                    found = [Reader(str(entry["pid"]), str(entry["command"]), str(entry["started"]), Path(p),
                                    tuple(inode) if isinstance(inode, list) and len(inode) == 2 else None,
                                    str(entry.get("host") or ""), str(entry.get("pidns") or ""))
                             for p, inode in zip(entry["paths"], entry.get("inodes") or [None] * len(entry["paths"]))]
                except (ValueError, KeyError, TypeError):  # not ours to judge: nothing to name
                    continue
                if own is not None:  # another thread's: its pid is this process's, which would read as this thread
                    found = [replace(reader, thread=own.thread.name) for reader in found]
                yield from found
                continue
            except OSError:
                continue
            try:
                host = json.loads(fh.read()).get("host")
            except (ValueError, AttributeError):
                host = None
            # Unlocked: its reader ended without releasing it (killed). One of another machine sharing this home (NFS)
            # may only look unlocked, where locks are not shared: that machine's writers remove it.
            if host in (None, socket.gethostname()):
                name.unlink(missing_ok=True)


def reader_around(path: Path) -> Reader | None:
    """A live reader (of another process, or another thread of this one) of `path`, of a folder holding it, or of
    anything under it: what replacing or deleting `path` would pull from under it."""
    try:
        located = real_path(Path(path))
    except (OSError, ValueError):
        return None
    for reader in live_readers():
        if reader.path == located or reader.path.is_relative_to(located) or located.is_relative_to(reader.path):
            return reader
        # Moved or renamed since it was read (`mv run run_old`): what it reads is where its inode is now
        if reader.inode is not None and _inode(reader.path) != reader.inode and (
                (now := _find_inode(located, reader.inode)) is not None):
            return replace(reader, path=now)
    return None


def _inode(path: Path) -> tuple[int, int] | None:
    """(device, inode) of `path`, None when nothing is there."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    return found.st_dev, found.st_ino


def _find_inode(located: Path, inode: tuple[int, int]) -> Path | None:
    """Where `inode` is now around `located` (a real path): it, a folder holding it, or anything under it."""
    for where in (located, *located.parents):
        if _inode(where) == inode:
            return where
    if not located.is_dir():
        return None
    for folder, dirs, files in os.walk(located):  # links not followed: what they point to is not deleted with them
        for name in dirs + files:
            try:
                found = os.lstat(os.path.join(folder, name))
            except OSError:  # gone meanwhile
                continue
            if (found.st_dev, found.st_ino) == inode:
                return Path(folder) / name
    return None


def refuse_outputs_being_read(outputs: Mapping[str, Path | None]) -> None:
    """OutputConflict naming the first reader (command, pid) of an output that exists and would be replaced or deleted:
    a server kept answering with weights no longer on disk, and a predictions manifest named a folder now holding
    another model."""
    for what, path in outputs.items():
        if path is None or not os.path.lexists(path) or (reader := reader_around(path)) is None:
            continue
        located = real_path(Path(path))
        where = ("reading it" if reader.path == located else f"reading {reader.path} inside it"
                 if reader.path.is_relative_to(located) else f"reading {reader.path}, which holds it")
        named = str(path) if what == str(path) else f"{path} ({what})"
        raise OutputConflict(f"{named}: `{reader.command}` ({reader.who}, since {reader.started}) is "
                             f"{where}, and this command would replace or delete it; stop that command first, or "
                             "write elsewhere")


def claim_outputs(command: str, inputs: Mapping[str, Path | None], files: Iterable[Path] = (),
                  folders: Iterable[Path] = (), overwrite: bool = False,
                  own: Mapping[Path, Callable[[str], bool]] | None = None, listed: Iterable[Path] = (),
                  named_after: Mapping[Path, Path] | None = None) -> Claim:
    """Check and lock the outputs of one run of `bbuvl COMMAND`; raises OutputConflict (and holds nothing) when
    one is an input, is being written by another process, or is in the way and not the command's own, or when an
    input is being written by another process.

    A folder the command sets aside whole (`replacing`), given in `own` or in `listed`, is recorded with the names of
    its files, and given up with --overwrite it may hold nothing but those its last run wrote (`refuse_strangers`).
    `own` maps such a folder to the names the command writes there (a pattern), which stand in where the ledger keeps
    no list; `listed` is for folders whose names no pattern tells (a model folder's vary with the model).
    `named_after` maps a file whose name the command makes from another output's (eval's METRICS.coco.json) to that
    output: a name too long for both is refused naming the output typed, and how long its name may be.
    Call it before any expensive work, then `finish` the claim (or use it as a context manager) when done.
    """
    files, folders = [Path(p) for p in files], [Path(p) for p in folders]
    own = {output_path(p): written for p, written in (own or {}).items()}
    listed = {output_path(p) for p in listed} | set(own)  # what it checks for strangers, by the list of what it wrote
    # First, by the names as given: a name past the file system's limit is an OSError to anything that looks at it
    after = {Path(made): Path(source) for made, source in (named_after or {}).items()}
    for given in files + folders:
        if after.get(given) not in files + folders:  # else checked with the output it is named after, as typed
            beside = [made for made, source in after.items() if source == given]
            check_name_room(given, given, file=given in files, beside=beside)
    check_not_inputs(inputs, files, folders)
    refuse_inputs_being_written(inputs)
    check_distinct(files + folders)
    outputs = [output_path(p) for p in files + folders]
    for out, given in zip(outputs, files + folders):
        check_not_special(given)
        check_not_bookkeeping(out, given)
    claim = Claim(command, outputs, {}, listed=listed)
    _adopt_readings(claim)
    try:
        for out in outputs:
            claim.locks.append(OutputLock(out, command).acquire())
        # A checkpoint's choice is written whole beside a model its readers go on reading (`CHOICE_FILES`): refused
        # while a predict read the checkpoint, it was taken when the predict started a moment later instead
        refuse_outputs_being_read({str(given): out for given, out in zip(files + folders, outputs)
                                   if out.name not in CHOICE_FILES or given in folders})
        for out, given, lock in zip(outputs, files + folders, claim.locks):
            claim.before[out] = digest = output_digest(out)
            if digest is None:
                continue
            killed = lock.killed_command == command
            # A killed run that had set aside what stood there before it (`replacing`) left under the name only what
            # it wrote itself: its photos, which the names its dataset gives (not yet written) cannot tell
            whole = killed and lock.killed_set_aside
            if overwrite:
                # What the ledger records as this command's, unchanged, holds nothing added since
                if out in listed and not whole and _read_ledger(out.parent).get(out.name) != (command, digest):
                    refuse_strangers(given, command, own.get(out), killed=killed)
                continue
            owner = writer_of(out)
            if owner is None and killed:
                # A run killed while it claimed (hashing a big folder) had not yet looked for strangers: its lock file
                # says whose the half is, never that nothing else is there, so the strangers are looked for again
                if out in listed and not whole:
                    refuse_strangers(given, command, own.get(out), killed=True, overwrite=False)
                log.info("%s: taken as `bbuvl %s`'s own: a run of it was killed while writing it", given, command)
                continue
            if owner != command:
                raise OutputConflict(_not_its_own(given, out, command, owner, own.get(out)))
    except BaseException:
        claim.release()  # a refused claim leaves a killed run's lock file as it found it
        raise
    return claim


def _not_its_own(given: Path, out: Path, command: str, owner: str | None,
                 own: Callable[[str], bool] | None = None) -> str:
    """Why `bbuvl COMMAND` without --overwrite refuses output `out` (as `given`), which `owner` wrote (None: no command
    wrote what is there now): another's, nobody's, or its own changed since, said as what changed where the ledger
    lists the folder's files (`own`: the names the command writes there, as `claim_outputs` is given them)."""
    recorded = _recorded_writer(out) if owner is None else None
    if recorded != command:
        by = (f"written by `bbuvl {owner}`" if owner is not None else "written by someone else" if recorded is None
              else f"written by `bbuvl {recorded}`, and changed since")
        return (f"{given}: exists and was not written by `bbuvl {command}` ({by}); refusing to replace it. Pass "
                "--overwrite to replace it, or choose another output")
    listed = _changes(out, recorded)
    added, gone = listed or ([], [])
    if added:
        return _added_since(given, out, recorded, added, own)
    if gone:
        what = f"{_shown(gone)}, which it wrote there, "
        change = what + ("is" if len(gone) == 1 else "are") + " gone"
    elif listed is not None:
        change = "a file it wrote there was edited"
    else:  # its ledger entry keeps a digest alone, no list of the folder's files to tell which
        change = "a file under it added, edited or removed" if out.is_dir() else "edited or replaced"
    return (f"{given}: changed since `bbuvl {recorded}` wrote it ({change}); refusing to replace it. Pass --overwrite to "
            "replace it, or choose another output")


def _added_since(given: Path, out: Path, command: str, added: list[str], own: Callable[[str], bool] | None) -> str:
    """Why `bbuvl COMMAND` without --overwrite refuses its own folder `out` (as `given`), which holds the files `added`
    since its last run: each said as what --overwrite does with it, by the rule --overwrite itself follows
    (`_overwrite_takes`), so the advice cannot promise what --overwrite does not do."""
    # A killed write's temporary of one of the command's own photos was said to be a file it "did not write", which
    # "--overwrite refuses to delete", and --overwrite then deleted it: the two were decided by two rules
    takes, chosen = _overwrite_takes(out, _own_rule(out, command, own))
    strangers = _strangers(out, out, takes)
    taken = [_taken_as(name, command, chosen) for name in added if not _covered(name, strangers)]
    if not strangers:
        them = _them(len(taken))
        return (f"{given}: holds {_shown(taken)}, put there since `bbuvl {command}` wrote the folder; refusing to "
                f"replace the folder: delete {them} or pass --overwrite (which removes {them}), or choose another "
                "output")
    them = _them(len(strangers))
    gone = "it is" if len(strangers) == 1 else "they are"
    also = f". Once {gone} out, --overwrite removes {_shown(taken)} with the folder" if taken else ""
    return (f"{given}: holds {_shown(strangers)}, which `bbuvl {command}` did not write (put there since it wrote the "
            f"folder); refusing to replace the folder, and {them} with it: move {them} out or delete {them} yourself "
            f"(--overwrite refuses to delete {them}), or choose another output{also}")


def _covered(name: str, strangers: list[str]) -> bool:
    """Whether the file `name` is, or lies in, one of `strangers` (`_strangers`: a folder of them ends in '/')."""
    return any(name == stranger or (stranger.endswith("/") and name.startswith(stranger)) for stranger in strangers)


def _taken_as(name: str, command: str, chosen: Mapping[str, str]) -> str:
    """`name`, a file --overwrite of `bbuvl COMMAND` removes with its folder, with why it may (`_overwrite_takes`)."""
    if (of := temporary_of(name)) is not None:
        return f"{name} (a killed write's temporary of its own {of})"
    if name in chosen:
        return f"{name} (chosen by `bbuvl {chosen[name]}` for the weights there, which it goes with)"
    if _os_metadata(Path(name).name):
        return f"{name} (a file manager's record of the folder)"
    return f"{name} (a name `bbuvl {command}` writes there)"


def _shown(names: list[str]) -> str:
    """The first three of `names`, and how many more."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _changes(out: Path, recorded: str) -> tuple[list[str], list[str]] | None:
    """The files under folder `out` that `bbuvl RECORDED` did not write there, and those it wrote that are gone, as
    its ledger entry lists them; None for a file, or a folder recorded without its names."""
    entry = _ledger_entries(out.parent).get(out.name, {})
    files = entry.get("files") if entry.get("by") == recorded else None
    if not isinstance(files, list) or not out.is_dir() or out.is_symlink():
        return None
    written = {f for f in files if isinstance(f, str)}
    now = {child.relative_to(out).as_posix() for child in _content(out)}
    return sorted(now - written), sorted(written - now)


def check_replaced_whole(folder: Path, command: str) -> None:
    """Raise OutputConflict, naming what would be lost, when `folder`, which `bbuvl COMMAND` replaces whole
    (atomic.py's `atomic_folder`), holds files and no ledger says that command wrote it.

    `--overwrite` gives up an output the command wrote that has changed since (a file edited, another version's
    build); it must not give up a folder of someone else's (a real checkpoint given as `model tiny OUT`), every file
    of which the replacement removes. Call it, with --overwrite, after `claim_outputs`; an empty folder passes.
    """
    out = output_path(folder)
    if output_digest(out) is None or command in (_recorded_writer(out), writer_of(out)):
        return
    if not out.is_dir():  # `choose-tiles -o notes.txt --overwrite` made the file a folder of its predictions
        raise OutputConflict(f"{folder}: a file `bbuvl {command}` did not write, where it writes a folder, so "
                             "--overwrite would delete it. Move it or delete it yourself, or choose another output folder")
    held = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if not p.is_dir() and not _bookkeeping(p.name) and not _os_metadata(p.name))
    if held:
        _refuse_held(folder, command, held)


def _refuse_held(folder: Path, command: str, held: list[str], overwrite: bool = True) -> None:
    """Raise OutputConflict naming what `folder` holds that `bbuvl COMMAND`, which replaces it whole, did not write;
    without `overwrite`, a folder a killed run of it left, which a plain run would take back as its own."""
    shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
    them = _them(len(held))
    by = "--overwrite" if overwrite else "running it again, which takes back what a killed run of it left,"
    raise OutputConflict(f"{folder}: holds {shown}, which `bbuvl {command}` did not write; it replaces the folder "
                         f"whole, so {by} would delete {them}. Move {them} out or delete {them} yourself, or "
                         "choose another output folder")


def refuse_strangers(folder: Path, command: str, own: Callable[[str], bool] | None = None, killed: bool = False,
                     overwrite: bool = True) -> None:
    """Raise OutputConflict, naming them, when `folder`, which `bbuvl COMMAND` sets aside whole (`replacing`), holds
    anything but the files it writes there (`own(name relative to the folder)` says which those are).

    The ledger records a folder by one digest, which tells that it changed, not what was added: with --overwrite a
    dataset another command wrote into a synthetic dataset's `images/`, or a predictions file saved among the photos,
    went with the folder. What the command's last run wrote there (`_own_rule`: its ledger entry lists it; `own`, the
    names it writes there, where no list is kept) it may replace, edited or not; anything else stays the user's,
    but for a checkpoint's choice (`CHOICE_FILES`) a command recorded beside the model: chosen for the weights being
    replaced, it goes with them, and is said to.
    `claim_outputs` calls it for the folders it is given in `own` or `listed`.
    """
    out = output_path(folder)
    if not out.is_dir() or out.is_symlink():
        return
    own = _own_rule(out, command, own, killed)
    takes, chosen = _overwrite_takes(out, own)
    strangers = _strangers(out, out, takes)
    if strangers:
        _refuse_held(folder, command, strangers, overwrite)
    for name, by in chosen.items():
        if not own(name):
            log.warning("%s, chosen by `bbuvl %s` for the old weights, goes with them", out / name, by)


def _overwrite_takes(out: Path, own: Callable[[str], bool]) -> tuple[Callable[[str], bool], dict[str, str]]:
    """Which names under the folder `out` --overwrite removes with it (`refuse_strangers`): the command's `own`
    (`_own_rule`) and the choices recorded beside a model (`CHOICE_FILES`), given with the command that chose each.
    Anything else there is a stranger; OS metadata is neither, and goes unnamed (`_strangers`)."""
    chosen = {name: entry["by"] for name, entry in sorted(_ledger_entries(out).items()) if name in CHOICE_FILES}
    return (lambda name: name in chosen or own(name)), chosen


def strangers_in(folder: Path, own: Callable[[str], bool]) -> list[str]:
    """What in `folder` a command did not write, by the names it writes there (`own`, relative to the folder), sorted:
    ledger, lock files and a file manager's records left out. A folder missing or empty holds none."""
    return _strangers(folder, folder, own) if folder.is_dir() and not folder.is_symlink() else []


def _strangers(under: Path, folder: Path, own: Callable[[str], bool]) -> list[str]:
    """What under `under` is not the command's own, relative to `folder`, sorted: a folder holding none of its files
    whole ('inner/'), else the strangers inside it (its own `train/` is not named for one file added there)."""
    found = []
    for entry in sorted(under.iterdir()):
        name = entry.relative_to(folder).as_posix()
        if _bookkeeping(entry.name) or _os_metadata(entry.name):
            continue
        if not entry.is_dir() or entry.is_symlink():
            found += [] if own(name) else [name]
        elif any(own(p.relative_to(folder).as_posix()) for p in _content(entry)):
            found += _strangers(entry, folder, own)
        else:
            found.append(name + "/")
    return found


@contextmanager
def replacing(outputs: Iterable[Path]) -> Iterator[None]:
    """Write claimed `outputs` anew in the block: what an earlier run left there is set aside first, removed when the
    block succeeds and put back when it fails, so each output (a dataset's `images/` and its JSONL) is wholly one
    run's: never the photos of a 2x2 tiling beside those of a 3x3, nor a failed run's half beside the old records.

    Call it only on outputs the command holds by `claim_outputs` (its own, or given up with --overwrite). A kill
    leaves the earlier outputs aside as `.NAME.PID.*.tmp` (removed by the next run, as atomic.py's temporaries are)
    and the killed run's unrecorded half under the real names, which the same command then redoes (see above). Not
    atomic.py's `.old`, which the next writer of one name puts back: outputs set aside together must come back
    together, and one put back alone would stand beside another's half from the killed run (docs/outputs.md).
    An output that cannot be put back after a failure is kept whole, never deleted (`_put_back`).
    """
    paths = [output_path(p) for p in outputs]
    for path in paths:
        if path.is_dir():
            # Set aside, the folder a command runs in took with it what the command then wrote through '.', and was
            # deleted with it (`fewshot eval --out .`: 'wrote ./', and nothing there).
            refuse_current_folder(path)
    aside: dict[Path, Path] = {}
    started = False
    try:
        for path in paths:
            remove_dead_writers_temporaries(path)
            if os.path.lexists(path):
                folder = temporary_folder(path)  # this process's own: no removal of dead writers' takes it
                os.rename(path, folder / path.name)
                aside[path] = folder
            mark_set_aside(path)
        started = True
        yield
    except BaseException as error:
        _put_back(paths, aside, started, error)
        raise
    for folder in aside.values():  # only once the block succeeded: on a failure what was not put back is kept
        shutil.rmtree(folder, ignore_errors=True)


def _put_back(paths: list[Path], aside: Mapping[Path, Path], ran: bool, error: BaseException) -> None:
    """Undo `replacing` after `error`: remove what the run wrote under each of `paths` (when it `ran`) and put back what
    was set aside in `aside`, every path tried whatever fails. An output that cannot be put back stays whole in a
    folder no writer removes, named in a warning and in a note on `error`, which stays the error raised: a writer
    never destroys a file it did not write (docs/outputs.md)."""
    for path in paths:
        problem = _put_back_one(path, aside.get(path), ran)
        if problem is not None:
            log.warning("%s", problem)
            error.add_note(problem)


def _put_back_one(path: Path, folder: Path | None, ran: bool) -> str | None:
    """Remove this run's `path` and put back the earlier one from `folder` (None: nothing was set aside); what went
    wrong and what to do, or None when all is as it was before the run."""
    removal = None
    if ran:
        try:
            remove_path(path)
        except OSError as e:  # an immutable file, a busy mount point, no descriptor left to list a folder with
            removal = e
    if folder is None:
        return None if removal is None else (f"{path}: what this failed run wrote there could not be removed "
                                             f"({_why(removal)}); remove it by hand")
    try:
        os.rename(folder / path.name, path)
    except OSError as e:
        return _kept_aside(path, folder, removal or e)
    try:
        folder.rmdir()
    except OSError:  # an empty temporary, removed by the next writer of `path` as a dead writer's
        pass
    return None


def _why(e: OSError) -> str:
    """What OSError `e` says, with the file it names: rmtree names a file by its name in its folder alone."""
    return f"{e.strerror or e}: {e.filename}" if e.filename is not None else str(e.strerror or e)


def _kept_aside(path: Path, folder: Path, why: OSError) -> str:
    """Keep `folder`, holding the earlier run's `path` that could not be put back, under a name no writer removes (a
    `.tmp` is a dead writer's temporary to the next run); the warning saying where it is and how to put it back."""
    kept = folder.with_suffix(".kept")
    try:
        os.rename(folder, kept)
    except OSError:
        kept = folder
    earlier = kept / path.name
    told = (f"{path}: the earlier run's output could not be put back ({_why(why)}); it is kept whole as {earlier}. To "
            f"put it back, remove what stands at {path}, then: mv {shlex.quote(str(earlier))} {shlex.quote(str(path))}")
    if kept == folder:
        told += " (move it now: the next run writing it removes it as a dead writer's temporary)"
    return told


# A line of a lock file whose writer had set aside what stood under the output's name before it (`replacing`)
_SET_ASIDE = "set aside"


@dataclass(frozen=True)
class LockLine:
    """What a lock file says of the process that took it: "PID COMMAND", then "host=HOST pidns=INODE boot=ID" (a lock of
    an earlier version has no such line, or no boot: '' then), then `_SET_ASIDE` once its writer had set the earlier
    output aside."""

    pid: str = ""
    command: str = ""
    host: str = ""
    pidns: str = ""
    set_aside: bool = False
    boot: str = ""  # the boot id of the kernel it ran on (`boot_id`): whose flock tells whether it holds the lock

    @classmethod
    def parse(cls, lock_text: str) -> "LockLine":
        """The fields of a lock file's text ('' for each that is missing)."""
        first, *rest = lock_text.strip().split("\n")
        pid, _, command = first.strip().partition(" ")
        where = dict(word.partition("=")[::2] for line in rest if line.startswith("host=") for word in line.split())
        return cls(pid, command, where.get("host", ""), where.get("pidns", ""), _SET_ASIDE in map(str.strip, rest),
                   where.get("boot", ""))

    @classmethod
    def of_this_process(cls, command: str) -> str:
        """The text of a lock this process takes for `bbuvl COMMAND`: a pid alone names no process where every
        container's bbuvl is pid 1, so its machine and pid namespace go with it, and the kernel it runs on."""
        boot = f" boot={found}" if (found := boot_id()) else ""
        return f"{os.getpid()} {command}\nhost={socket.gethostname()} pidns={pid_namespace()}{boot}\n"

    @property
    def who(self) -> str:
        """'pid N', with its machine or pid namespace where they are not this process's (`process_named`)."""
        return process_named(self.pid or "unknown", self.host, self.pidns)

    @property
    def checkable_here(self) -> bool:
        """Whether this machine can tell, by its lock being free, that the process this line names has ended.

        A flock is kept by the kernel that took it. Where a shared folder's locks stay on each machine (NFS mounted
        `nolock` or `local_lock=flock`) a lock another machine holds looks free here, and a live writer there was taken
        for a killed one: its temporary folder deleted under it. So the line must name this kernel: by its boot id (a
        container of this machine has a hostname and pid namespace of its own, and this kernel), or by this host and
        this pid namespace or one this process sees (a line without a host is of this host; a line of this host and
        namespace but another boot is of this machine before it restarted, which ended every process).
        """
        if self.boot and self.boot == boot_id():
            return True
        if self.host and self.host != socket.gethostname():
            return False
        return not self.pidns or self.pidns == pid_namespace() or _pid_namespace_seen(self.pidns)


def boot_id() -> str:
    """The boot id of the kernel this process runs on (one per boot, shared by its containers), '' where the system does
    not say."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return ""


def _pid_namespace_seen(pidns: str) -> bool:
    """Whether a process of the pid namespace `pidns` (its /proc/PID/ns/pid inode) is one this process sees: then that
    namespace is of this kernel, whose flock is the truth. One of another user's processes is not seen (not checked)."""
    try:
        wanted = int(pidns)
        entries = os.scandir("/proc")
    except (OSError, ValueError):
        return False
    with entries:
        for entry in entries:
            try:
                if entry.name.isdigit() and os.stat(f"/proc/{entry.name}/ns/pid").st_ino == wanted:
                    return True
            except OSError:  # ended meanwhile, or not this user's to look at
                continue
    return False


def _cannot_check(out: Path, line: LockLine, lock: Path, around: Path | None = None) -> OutputConflict:
    """The refusal of output `out` when the lock file `lock`, its own or that of `around` (a folder holding it, or an
    output inside it), names a writer this machine cannot check (`LockLine.checkable_here`): nothing is taken from it,
    nor any of its temporaries removed."""
    whose = ("its lock" if around is None else
             f"the lock of {around}, {'inside it' if around.is_relative_to(out) else 'which holds it'},")
    return OutputConflict(f"{out}: {whose} names {line.who} (`bbuvl {line.command}`), which this machine cannot check: "
                          "over a shared folder whose locks stay on each machine (NFS with nolock or local_lock) that "
                          "run looks ended from here even while it writes. If that run is gone, delete "
                          f"{lock}, then run this again; or choose another output")


def pid_namespace() -> str:
    """This process's pid namespace (the inode of /proc/self/ns/pid; each container has its own), '' where the system
    does not say."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def process_named(pid: str, host: str = "", pidns: str = "") -> str:
    """'pid N' for a process of this machine and pid namespace (or one whose record does not say), else 'pid N on host
    H' or 'pid N in another pid namespace on host H': there a pid alone names another process."""
    if host and host != socket.gethostname():
        return f"pid {pid} on host {host}"
    if pidns and pidns != pid_namespace():
        return f"pid {pid} in another pid namespace on host {host or socket.gethostname()}"
    return f"pid {pid}"


def mark_set_aside(path: Path) -> None:
    """Note in the lock this process holds on `path` that nothing of an earlier run stands under its name any more:
    what a kill leaves there from now on is this run's alone, which a re-run of the command takes back whole."""
    with _HELD_GUARD:
        held = _HELD.get(lock_path(path))
        if held is None or held.lock._marked:
            return
        # Appended: the holder's line stays whole, whenever a kill lands
        _write_lock_line(held.fh, held.lock.path, f"{_SET_ASIDE}\n", at_end=True)
        held.lock._marked = True


def hold_outputs(command: str, outputs: Iterable[Path]) -> Claim:
    """Lock outputs against other processes only (raises OutputConflict naming the holder), for commands that
    decide what is theirs themselves; `finish` releases them."""
    outputs = list(outputs)
    for given in outputs:
        check_not_bookkeeping(output_path(given), Path(given))
    claim = Claim(command, [output_path(p) for p in outputs], {}, record=False)
    _adopt_readings(claim)
    try:
        for out in claim.outputs:
            claim.locks.append(OutputLock(out, command).acquire())
    except BaseException:
        claim.release()
        raise
    return claim


class OutputLock:
    """An exclusive lock on one output for the life of a run; a second process fails naming the holder's pid.

    flock rather than a bare pid file: the kernel drops it when the holder dies, even by SIGKILL, so a killed run
    never leaves a stale lock behind. (filelock does the same but cannot say who holds it.) Re-entrant within a
    thread: a command's claim and the library code it calls may both lock one output. Another thread of this process
    is refused as another process is: a notebook's second `run_predictions` on a background thread wrote its lines into
    the file its first was writing. Any thread may let go of what another took (a lock is not bound to a thread).
    Folders the lock file needed are removed again on release when still empty, so a refused command leaves no folder
    behind.
    """

    def __init__(self, out: Path, command: str):
        self.out = output_path(out)
        self.path = lock_path(self.out)
        self.command = command
        self._found = ""  # what a killed holder's lock file this one found held ("PID COMMAND", then `_SET_ASIDE`), else ""
        self._created: list[Path] = []
        self._marked = False  # `mark_set_aside` wrote its line
        self._holds = 0  # how many times this object took it and has not let go: only those it may release

    def acquire(self) -> "OutputLock":
        """Take the lock, or raise OutputConflict naming the process, or the other thread of this one, that holds it
        (an OSError naming the lock file when it cannot be written: a full disk, a read-only one); refused or failed,
        it leaves nothing behind."""
        # One at a time in this process: two threads that both found it free took it both, or refused each other
        with _HELD_GUARD:
            held = _HELD.get(self.path)
            if held is None:
                _HELD[self.path] = _Holding(self, self._take(), threading.current_thread())
            elif held.ours:
                held.count += 1
            else:
                raise OutputConflict(f"{self.out}: another `bbuvl {held.lock.command}` ({held.who}) is writing it; "
                                     "wait for it to finish, or stop it and re-run")
            self._holds += 1
        return self

    def _take(self) -> Any:
        """Take the lock file (`acquire`, holding `_HELD_GUARD`): its open file, flock-ed and naming this process."""
        self._created = [p for p in [self.path.parent, *self.path.parent.parents] if not p.exists()]  # deepest first
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = self._open_locked()
        except BaseException as e:
            self._remove_created()
            raise _naming(e, self.path)
        try:
            fh.seek(0)
            # A holder that ends removes its lock file before letting go, so a file with a holder's line in it, now
            # unheld, is a killed run's: where this kernel would hold its lock, else it may be writing still, and
            # nothing of it is taken (atomic.py removes every temporary of an output held but this process's own).
            self._found = fh.read().strip()
            if self.killed.command and not self.killed.checkable_here:
                raise _cannot_check(self.out, self.killed, self.path)
            _write_lock_line(fh, self.path, LockLine.of_this_process(self.command))
            # Taken first, then the folders around it checked: of two runs that start at once on a folder and a file
            # inside it, at least one sees the other (at worst both are refused, never both let through).
            busy = _busy_around(self.out)
        except BaseException as e:
            self._give_up(fh)
            raise _naming(e, self.path)
        if busy is not None:
            self._give_up(fh)
            where, command, who, uncheckable = busy
            if uncheckable is not None:
                raise _cannot_check(self.out, uncheckable, lock_path(where), around=where)
            raise OutputConflict(f"{where}: another `bbuvl {command or self.command}` ({who}) is "
                                 f"writing it, and {self.out} {'holds it' if where.is_relative_to(self.out) else 'is inside it'}; "
                                 "wait for it to finish, or choose another output")
        return fh

    def _open_locked(self) -> Any:
        """The lock file, opened (made when missing) and flock-ed by this process; OutputConflict naming its holder."""
        while True:
            # Read and written in place (not in append mode): a killed run's line is put back over this run's in the
            # room the file already has, so a full disk cannot lose it.
            # surrogateescape: bytes that are no UTF-8 are read, and put back, as they are.
            # Never through a link: a symbolic link, or a hard link, under the lock's name had the file it names
            # truncated and overwritten with the lock line (a model's config.json, a snapshot's lock file).
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
            except OSError as e:
                if e.errno == errno.ELOOP or self.path.is_symlink():
                    raise OutputConflict(_not_a_lock_file(self.out, self.path, "a symbolic link")) from None
                raise
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # before a text file seeks on a FIFO
                os.close(fd)
                raise OutputConflict(_not_a_lock_file(self.out, self.path, "no regular file"))
            fh = os.fdopen(fd, "r+", encoding="utf-8", errors="surrogateescape")
            try:
                _flock_soon(fh.fileno())
            except BlockingIOError:
                fh.seek(0)
                holder = LockLine.parse(fh.read())
                # Another thread's, through another spelling of the path (a link to its folder): its lock line names
                # this process's pid, which would read as another process
                here = _find_holding(fh)
                fh.close()
                who = here.who if here is not None else holder.who
                raise OutputConflict(f"{self.out}: another `bbuvl {holder.command or self.command}` ({who}) "
                                     "is writing it; wait for it to finish, or stop it and re-run") from None
            except BaseException:
                fh.close()
                raise
            # The holder before us may have unlinked the file between our open and our flock: then we hold a
            # lock on a name nobody else sees, so take it again on the file that is there now.
            if self.path.exists() and os.path.samestat(st := os.fstat(fh.fileno()), self.path.stat()):
                if st.st_nlink > 1:  # free, but its line would be written into the file's other names too
                    fh.close()
                    raise OutputConflict(_not_a_lock_file(self.out, self.path,
                                                          f"a hard link ({st.st_nlink} names for one file)"))
                return fh
            fh.close()

    @property
    def killed(self) -> LockLine:
        """What the lock file of a killed holder that this one found says (every field '' where none was found)."""
        return LockLine.parse(self._found)

    @property
    def killed_command(self) -> str | None:
        """The command of a killed holder whose lock file this one found, or None."""
        return self.killed.command or None

    @property
    def killed_pid(self) -> str | None:
        """The pid of a killed holder whose lock file this one found, or None."""
        return self.killed.pid or None

    @property
    def killed_set_aside(self) -> bool:
        """Whether the killed holder had set aside what was there before it (`mark_set_aside`)."""
        return self.killed.set_aside

    def release(self, restore: bool = False) -> None:
        """Let go (the last of the re-entrant holders removes the lock file; with `restore`, one that held a killed
        run's line gets that line back and stays, for the run that will redo its output). Let go however it ends: an
        OSError naming the lock file is raised only after. One that never took it (refused: another thread holds it),
        or let go already, releases nothing: that holder's lock is not its to let go."""
        with _HELD_GUARD:
            if self._holds == 0:
                return
            self._holds -= 1
            held = _HELD.get(self.path)
            if held is None:  # a forked child's copy, let go at the fork
                return
            held.count -= 1
            if held.count > 0:
                return
            del _HELD[self.path]
            held.lock._let_go(held.fh, restore)

    def _give_up(self, fh: Any) -> None:
        """Let go of a lock this process failed or was refused to take: a killed run's lock file stays as it was
        found, a new one goes; what fails doing so is a warning, never raised over why it was given up."""
        try:
            self._let_go(fh, restore=True)
        except OSError as e:
            log.warning("%s; the lock file of %s could not be put back as it was found", _said(e, self.path), self.out)

    def _let_go(self, fh: Any, restore: bool) -> None:
        """Put back the killed run's line found (`restore`) or remove the lock file, then close it and remove the
        folders it needed: closed and removed also when writing the line fails."""
        try:
            if restore and self._found:
                _write_lock_line(fh, self.path, self._found + "\n")
            else:
                self.path.unlink(missing_ok=True)  # while still locked, so no one else can be holding this inode
        finally:
            try:
                fh.close()
            except OSError:  # what it had not written (a full disk's) is said by the write that failed
                pass
            self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:
            try:
                folder.rmdir()
            except FileNotFoundError:  # a mkdir that failed part-way made none deeper than this one
                continue
            except OSError:  # something was written there: it stays
                break
        self._created = []

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _not_a_lock_file(out: Path, path: Path, what: str) -> str:
    """Why the lock of `out` cannot be taken at `path`, which is `what` (a link, a hard link, no file)."""
    return (f"{out}: its lock file {path} is {what}, where bbuvl writes its lock line into a file of its own; it would "
            f"change what else that is. Remove {path} (nothing of the output is in it), then run this again")


def _write_lock_line(fh: Any, path: Path, text: str, at_end: bool = False) -> None:
    """Write `text` over lock file `fh`'s content (or after it, `at_end`), at once; an OSError naming `path` when it
    cannot be written (a full disk's write names no file)."""
    try:
        fh.seek(0, os.SEEK_END if at_end else os.SEEK_SET)
        fh.write(text)
        fh.truncate()
        fh.flush()
    except OSError as e:
        raise _naming(e, path) from e


def _naming(e: BaseException, path: Path) -> BaseException:
    """`e`, or where it is an OSError naming no file (a full disk's failed write, "No space left on device: ;"), the
    same error naming `path`."""
    if not isinstance(e, OSError) or e.filename is not None or not e.errno:
        return e
    named = OSError(e.errno, e.strerror, str(path))
    named.__cause__ = e
    return named


def _said(e: OSError, path: Path | None) -> str:
    """What OSError `e` says, naming `path` where it names no file itself (a failed write's own words name it)."""
    if isinstance(e, WriteFailed):
        return e.strerror
    named = e.filename if e.filename is not None else path
    return f"{named}: {e.strerror or e}" if named is not None else str(e.strerror or e)


def _flock_soon(fd: int, tries: int = 5) -> None:
    """An exclusive flock, retried briefly: another run checking this lock holds it shared for microseconds
    (`_busy_around`); BlockingIOError when a writer holds it."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == tries - 1:
                raise
            time.sleep(0.02)


def _busy_around(out: Path) -> tuple[Path, str, str, LockLine | None] | None:
    """(output, command, who, line) of a lock another process, or another thread of this one, holds on a folder
    holding `out`, or on anything under `out` when it is a folder: one output's writer must not write into another's (a
    dataset folder and its images/). A lock free here that names a writer this machine cannot check
    (`LockLine.checkable_here`) is one too, its line given as `line` (None for a held lock). Called holding
    `_HELD_GUARD`."""
    candidates = [lock_path(folder) for folder in out.parents if folder.parent != folder]
    if out.is_dir():
        candidates += [p for p in out.rglob(f".*{LOCK_SUFFIX}") if p.is_file()]
    for candidate in candidates:
        where = candidate.with_name(candidate.name[1:-len(LOCK_SUFFIX)])
        if (held := _HELD.get(candidate)) is not None:
            if held.ours:  # this thread's own claim around it (train's run folder, and what it saves inside)
                continue
            return where, held.lock.command, held.who, None
        if not candidate.is_file():
            continue
        try:
            fh = candidate.open("r", encoding="utf-8", errors="replace")
        except OSError:  # gone meanwhile, or unreadable: nothing we can tell
            continue
        where = candidate.with_name(candidate.name[1:-len(LOCK_SUFFIX)])
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                line = LockLine.parse(fh.read())
                here = _find_holding(fh)  # this process's, under another spelling of its path
                if here is not None and here.ours:
                    continue
                return where, line.command, here.who if here is not None else line.who, None
            except OSError:
                continue
            if (line := LockLine.parse(fh.read())).command and not line.checkable_here:
                return where, line.command, line.who, line
    return None


@dataclass
class _Holding:
    """A lock this process holds: the OutputLock that took it, its open file, the thread that took it (the only one
    that may take it again) and how many times that thread has taken it and not let go."""

    lock: OutputLock
    fh: Any
    thread: threading.Thread  # the object, not its ident: an ident is given again to a thread started after it ends
    count: int = 1

    @property
    def ours(self) -> bool:
        """Whether the calling thread is the one that took it."""
        return self.thread is threading.current_thread()

    @property
    def who(self) -> str:
        """'thread NAME of this process, pid N' (`thread_named`)."""
        return thread_named(self.thread.name)


# lock file -> this process's hold of it; read and changed only under _HELD_GUARD, so that of two threads taking one
# lock at once one holds it and the other is refused
_HELD: dict[Path, _Holding] = {}
_HELD_GUARD = threading.Lock()


def _find_holding(fh: Any) -> _Holding | None:
    """This process's hold of the lock file open as `fh` (the same inode), None when it holds none; call holding
    `_HELD_GUARD`."""
    try:
        found = os.fstat(fh.fileno())
        return next((held for held in _HELD.values() if os.path.samestat(found, os.fstat(held.fh.fileno()))), None)
    except (OSError, ValueError):  # a held file closed meanwhile (a fork's child let go): not held
        return None


def _let_go_in_forked_child() -> None:
    """A forked child (a DataLoader worker of train or predict) closes its copies of the locks' files and forgets them.

    A flock lasts while any copy of its file is open: a run killed by `kill -9` or the OOM killer left its workers
    holding its outputs for seconds after it, and the re-run at once with --resume was refused, naming a pid that had
    ended. Forgetting them also keeps a child that ends from removing a lock file its parent still holds.
    """
    global _HELD_GUARD, _READING_GUARD
    # A thread of the parent may have held a guard at the fork: it never lets go in the child
    _HELD_GUARD, _READING_GUARD = threading.Lock(), threading.Lock()
    for held in _HELD.values():
        try:
            held.fh.close()
        except OSError:
            pass
    _HELD.clear()
    for reading in _READING.values():  # its parent's registrations: released by the parent, never by a worker
        try:
            reading._fh.close()
        except OSError:
            pass
        reading._unpin()
    _READING.clear()
    _PENDING.clear()


os.register_at_fork(after_in_child=_let_go_in_forked_child)


def lock_path(out: Path) -> Path:
    """The lock file of an output: hidden, beside it."""
    out = output_path(out)
    if not out.name:  # `training.output_dir=/` failed on a ValueError traceback: the root has nothing beside it
        raise OutputConflict(f"{out}: the root of the file system cannot be an output; choose a folder inside it")
    return out.with_name(f".{out.name}{LOCK_SUFFIX}")


# What a file manager leaves in a folder it showed (Finder, Explorer, macOS on a foreign disk: `._NAME`): nobody's
# work, so a folder replaced whole takes it along unnamed; an editor's backup (`config.json~`) is someone's, and stays.
_OS_METADATA = frozenset({".ds_store", "thumbs.db", "desktop.ini"})


def _os_metadata(name: str) -> bool:
    """Whether `name` is a file manager's record of the folder it lies in (docs/outputs.md)."""
    return name.lower() in _OS_METADATA or name.startswith("._")


def _them(count: int) -> str:
    """'it' for one thing, 'them' for more."""
    return "it" if count == 1 else "them"


def _bookkeeping(name: str) -> bool:
    """Ledger and lock files: ours, never part of an output's content."""
    return name == LEDGER or (name.startswith(".") and name.endswith(LOCK_SUFFIX))


def _ledger_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """name -> entry ({"by", "sha256"}, and "files" for a listed folder) of what the commands recorded in `folder`;
    entries without a digest (ledgers of earlier versions, which recorded names only) prove nothing and are left out."""
    try:
        data = json.loads((folder / LEDGER).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none, unreadable or damaged: nothing there is known to be ours
        return {}
    written = data.get("written") if isinstance(data, dict) else None
    if not isinstance(written, dict):
        return {}
    return {name: e for name, e in written.items()
            if isinstance(e, dict) and isinstance(e.get("by"), str) and isinstance(e.get("sha256"), str)}


def written_here(folder: Path, command: str) -> list[str]:
    """The names the ledger in `folder` itself records as written by `command` that still hold what it wrote (a file
    or folder of the same digest); none recorded through a folder above it."""
    found = []
    for name, (by, digest) in sorted(_read_ledger(folder).items()):
        try:
            if by == command and output_digest(folder / name) == digest:
                found.append(name)
        except OSError:  # unreadable now: not known to be what it wrote
            continue
    return found


def _read_ledger(folder: Path) -> dict[str, tuple[str, str]]:
    """name -> (command, digest) of what the commands recorded in `folder`."""
    return {name: (e["by"], e["sha256"]) for name, e in _ledger_entries(folder).items()}


def _own_rule(path: Path, command: str, fallback: Callable[[str], bool] | None,
              killed: bool = False) -> Callable[[str], bool]:
    """Which names under the folder `path` are `bbuvl COMMAND`'s own: those its last run wrote there, as the ledger
    lists them (`claim_outputs` records every folder it checks so), and their writers' temporaries.

    `fallback` (the names the command writes there, a pattern) stands in where the ledger has no list: another
    command's folder, none recorded, or an entry an earlier version wrote; with neither, an entry by the command owns
    the folder whole (what it wrote there is not known, so nothing can be named as not its) and any other none of it.
    A run of the command `killed` while writing the folder left names no list holds yet, which `fallback` tells.
    """
    entry = _ledger_entries(path.parent).get(path.name, {})
    files = entry.get("files") if entry.get("by") == command else None
    if not isinstance(files, list):
        if fallback is not None:
            return fallback
        by_command = entry.get("by") == command
        return lambda name: by_command
    written = frozenset(f for f in files if isinstance(f, str))
    half = fallback if killed and fallback is not None else lambda name: False
    return lambda name: name in written or temporary_of(name) in written or half(name)


def recorded_writer(path: Path) -> str | None:
    """The command the ledger names as the writer of `path` (however it is spelt), whatever is there now: changed
    since or not (`writer_of` says whether it still is that command's)."""
    return _recorded_writer(output_path(path))


def _recorded_writer(path: Path) -> str | None:
    """The command the ledger names for `path` itself, whatever is there now."""
    entry = _read_ledger(path.parent).get(path.name)
    return entry[0] if entry else None


def _record(folder: Path, digests: Mapping[str, str | None], command: str, listed: Collection[Path] = ()) -> None:
    """Record `command` as the writer of each name's content (a None digest: nothing there, the entry goes), and for
    a folder in `listed` the names of its files."""
    with _ledger_lock(folder):  # two commands writing into one folder at once must not drop each other's entries
        ledger = _ledger_entries(folder)
        new = dict(ledger)
        for name, digest in digests.items():
            if digest is None:
                new.pop(name, None)
                continue
            new[name] = {"by": command, "sha256": digest}
            if folder / name in listed and (folder / name).is_dir():
                new[name]["files"] = [p.relative_to(folder / name).as_posix() for p in _content(folder / name)]
        if new == ledger:
            return
        if not new:
            (folder / LEDGER).unlink(missing_ok=True)
            return
        entries = {"written": dict(sorted(new.items()))}
        text = json.dumps(entries, ensure_ascii=False, indent=1)
        if not _is_utf8(text):  # a name of bytes that are not UTF-8 (a GBK name) is kept as JSON's \udcbb escapes
            text = json.dumps(entries, indent=1)
        write_text_atomic(folder / LEDGER, text + "\n")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def _ledger_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder` itself (no lock file left behind) while its ledger is read and replaced."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
