"""Atomic file writes: a file is either its old self or completely the new one, never half of either.

Every output bbuvl writes (metrics, reports, summaries, checkpoints) goes through here: the bytes go to a
temporary file beside the target, are flushed to disk, and only then renamed over it. A full disk or a
kill during the write leaves the previous file untouched and at most a stray `.NAME.PID.*.tmp.EXT` beside it
(the extension kept so that Pillow and matplotlib still know the format). The next write of a folder removes the
temporary folder a killed writer of that name left (a whole model's size, for an export killed half-way): it runs
holding that output's lock (bbuvl/outputs.py), so no other writer of it is at work, and every temporary of it but
those this process made (`_MADE`) is a dead writer's. (A lock file naming a writer whose kernel this machine cannot
check, another machine's over NFS whose locks stay on each machine, is refused there, never taken: its writer may live.) The pid in a temporary's name tells people whose it was, never
whether its writer lives: in a container every bbuvl is pid 1, and a pid that was running kept a killed pid 1's
temporary (80 MB, for a tiny model) for good. A file's stray is at most one file, and looking for it would list the
folder at every write: 5,000 photos written into one folder took 13.2 s that way against 1.6 s, so files are not
looked for.

A folder is replaced whole (`replace_folder`: `atomic_folder`, train's final/) or removed whole (`remove_whole`: a run's
old checkpoints) by renaming it aside first, as `.NAME.PID.XXXXXXXX.old` or `.del`: a stop leaves it whole or gone under
its name, never half, and the next writer of it puts back or removes what a killed one left (docs/resume.md, "Folders
replaced or removed whole").

Pictures go through `save_atomic`, which has them encoded in memory first: Pillow's C encoders write to the
file descriptor themselves and ignore a full disk (Pillow 13: a 13,904-byte JPEG saved with 8 KiB free left an
8,192-byte file and no error), so a picture is written here, by Python, whose writes fail loudly. Libraries that
word a failed write their own way are reported as the OSError naming the path that it is: safetensors' errno is read
from its words ("File too large (os error 27)"), and torch's zip writer, which names none ("unexpected pos 9364096 vs
9363984" on a full disk, a used-up quota or past `ulimit -f` alike), has it asked of the disk before what it wrote is
removed (`failed_write_errno`).
"""

from __future__ import annotations

import ctypes
import errno
import glob
import io
import os
import re
import resource
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

# mkstemp creates 0600 files; a finished output gets the permissions a plain open() would have given it.
_UMASK = os.umask(0)
os.umask(_UMASK)


def written_path(path: str | Path) -> Path:
    """`path`, or the path it links to when it is a symbolic link (absolute then): what writing `path` should replace."""
    # os.replace onto a link replaces the link with a file and leaves the file it named as it was: `latest.json ->
    # run3.json` would stop naming run3's result. Writes follow the link instead, and the output's lock and owner
    # (bbuvl/outputs.py) are the target's, so that two spellings of one output are one output.
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def readable_as_opened(file: str | Path) -> None:
    """Give `file` at least the read and write bits a plain open() gives under the umask (widened only: execute bits
    are kept). Writers that create their files 0600 (safetensors 0.8, mkstemp) left a checkpoint's weights unreadable
    to whoever could read its config.json beside them."""
    os.chmod(file, (os.stat(file).st_mode & 0o777) | (0o666 & ~_UMASK))


@contextmanager
def atomic_path(path: str | Path, sync: bool = True) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` only if the block finishes without error.

    For writers that want a file name (safetensors' `save_file`, `shutil.copyfile`); pictures use `save_atomic`.
    A text stream's UTF-8 codec error in the block is a ValueError naming `path` (`write_text_atomic`).
    `sync=False`: renamed into place without waiting for the disk, still whole or absent to any process, for a writer
    of many files that makes them durable at once (`sync_files`) before a file it writes names them.
    """
    path = written_path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, expected a file name to write")
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        tmp = _own(Path(name))
        os.chmod(tmp, 0o666 & ~_UMASK)
        yield tmp
        if sync:
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
        readable_as_opened(tmp)  # the writer may have made the file anew (safetensors' save_file does, 0600)
        os.replace(tmp, path)
        _disown(tmp)
    except BaseException as e:
        code = failed_write_errno(e, tmp)  # before the temporary goes: the disk is as the failed write left it
        if tmp is not None:
            _discard(tmp)
        if isinstance(e, UnicodeEncodeError) and e.encoding == "utf-8":  # a writer's text stream (a .csv of paths)
            raise _not_written(path, e) from None
        if code is None:
            raise
        kept = "the previous file is kept" if path.exists() else "nothing was written"
        raise WriteFailed(code, f"{path}: writing failed ({_why(e, code)}); {kept}", _why(e, code)) from e


def sync_files(paths: Iterable[Path]) -> None:
    """Flush `paths` (written with `atomic_path(sync=False)`) to disk: one syncfs of each filesystem they lie on under
    Linux, an fsync each elsewhere or where syncfs fails.

    An fsync a file cost a 5,000-photo `data import-coco` 5,000 waits on the disk (11 of its 47 s on the shared
    machine, bench/import_syncs.py); one syncfs before the dataset's files name the photos gives the same guarantee."""
    by_device: dict[int, list[Path]] = {}
    for path in paths:
        by_device.setdefault(os.stat(path).st_dev, []).append(Path(path))
    for files in by_device.values():
        if _SYNCFS is not None:
            fd = os.open(files[0].parent, os.O_RDONLY)
            try:
                if _SYNCFS(fd) == 0:
                    continue
            finally:
                os.close(fd)
        for file in files:
            with file.open("rb+") as fh:
                os.fsync(fh.fileno())


def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _syncfs()


def write_bytes_atomic(path: str | Path, data: bytes, sync: bool = True) -> Path:
    """Write `data` to `path` atomically; returns the path. `sync`: as `atomic_path`'s."""
    with atomic_path(path, sync) as tmp:
        with tmp.open("wb") as fh:
            fh.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, sync: bool = True) -> Path:
    """Write UTF-8 `text` to `path` atomically; returns the path. ValueError naming the file, and what in the text no
    UTF-8 file holds, when the text is not all Unicode (a path of bytes that are not UTF-8, which Python holds as lone
    surrogates): it was "'utf-8' codec can't encode characters in position 31-34", naming nothing. `sync`: as
    `atomic_path`'s."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _not_written(path, e) from None
    return write_bytes_atomic(path, data, sync)


def _not_written(path: str | Path, e: UnicodeEncodeError) -> ValueError:
    """The error for text that no UTF-8 file holds, naming the file and quoting the text around what `e` could not
    encode, bytes that are not UTF-8 spelt `\\xbb` (a lone surrogate that no byte made, `\\udbbb`)."""
    around = e.object[max(0, e.start - 40):e.end + 40]
    try:
        shown = around.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        shown = around.encode("utf-8", "backslashreplace").decode("utf-8")
    shown = "'" + shown.replace("\n", "\\n") + "'"  # one line: the text is a JSON file's, indented
    return ValueError(f"{path}: not written: it would hold {shown}, which no UTF-8 file can hold (a path or name of "
                      "bytes that are not UTF-8, such as a folder named in GBK?)")


def refuse_current_folder(path: Path) -> None:
    """OSError when the folder a command runs in is `path` or lies inside it: replacing `path` whole would fail on
    `.` (a folder in use cannot be renamed) or leave the shell in a deleted folder."""
    try:
        here = Path(os.getcwd())
    except OSError:  # the current folder is gone already: nothing of it to keep
        return
    target = Path(os.path.realpath(path))
    if here == target or target in here.parents:
        raise OSError(errno.EBUSY, f"{path}: is the folder this command runs in{'' if here == target else ' (or holds it)'}, "
                      "and it is written whole, replacing that folder; run the command from another folder (cd ..), "
                      "or write elsewhere")


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside `path` to fill; it replaces `path` (and all that was in it) only if the block
    finishes without error, so a checkpoint folder is never half-saved under its name (`replace_folder`: a kill
    between its two renames leaves the previous folder whole aside, put back by the next writer of NAME)."""
    path = written_path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: is a file, expected a folder to write")
    refuse_current_folder(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_writers_temporaries(path)  # before the new folder takes its room: a whole model's size
        tmp = temporary_folder(path)
        os.chmod(tmp, 0o777 & ~_UMASK)
        yield tmp
        for file in [p for p in tmp.rglob("*") if p.is_file() and not p.is_symlink()]:
            with file.open("rb") as fh:
                os.fsync(fh.fileno())
            readable_as_opened(file)
        replace_folder(tmp, path)
        _disown(tmp)
        tmp = None
    except BaseException as e:
        code = failed_write_errno(e, tmp)  # before the temporary goes: the disk is as the failed write left it
        if tmp is not None:
            _discard(tmp)
        if code is None:
            raise
        kept = "the previous folder is kept" if path.exists() else "nothing was written"
        raise WriteFailed(code, f"{path}: writing failed ({_why(e, code)}); {kept}", _why(e, code)) from e


# What a folder renamed aside is there for, by the last part of its name (`.NAME.PID.XXXXXXXX.KIND`): the previous
# folder a replacement keeps until the new one is in, or a folder being removed.
REPLACED, REMOVED = "old", "del"


def _set_aside(path: Path, kind: str) -> Path:
    """Rename `path` into a new hidden folder beside it named `.NAME.PID.XXXXXXXX.KIND` (`temporary_folder`: this
    process's own until it is gone), and return that folder; nothing left of it when the rename fails."""
    holder = temporary_folder(path, f".{kind}")
    try:
        os.rename(path, holder / path.name)
    except BaseException:
        holder.rmdir()  # `.` (the current folder) cannot be renamed at all: `..XXXX.old` was left
        _disown(holder)
        raise
    return holder


def replace_folder(new: Path, path: Path) -> None:
    """Put the finished folder `new` in place of `path` (and all that was in it) by two renames, the previous folder set
    aside between them as `.NAME.PID.XXXXXXXX.old` and removed once the new one is in.

    A kill between the renames leaves the previous folder whole aside and nothing under NAME, never a mixture: the next
    writer of NAME puts it back first (`remove_dead_writers_temporaries`), and train's final/ puts back the new one
    (model/checkpoint.py `finish_swap`). A rename that fails puts the previous folder back at once.
    """
    remove_dead_writers_temporaries(path)
    old = _set_aside(path, REPLACED) if os.path.lexists(path) else None
    try:
        os.rename(new, path)
    except BaseException:
        if old is not None and not os.path.lexists(path):
            os.rename(old / path.name, path)
            old.rmdir()
            _disown(old)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        _disown(old)


def remove_whole(path: Path) -> None:
    """Remove the folder `path` so that a stop part-way leaves none of it under its name: renamed aside as
    `.NAME.PID.XXXXXXXX.del`, then removed (a link or a file is removed as such, never what a link names).

    rmtree unlinks file by file, a model's weights in tenths of a second: a stop there left a checkpoint-N neither
    whole nor gone, which `--resume` could take for the newest and `doctor` showed. A stop raised in Python (Ctrl-C)
    removes the rest on its way out; what a killed remover left aside goes with the next run or writer of the folder
    (`remove_dead_writers_temporaries`, `remove_dead_removals`).
    """
    if path.is_symlink() or not path.is_dir():
        remove_path(path)
        return
    holder = _set_aside(path, REMOVED)
    try:
        shutil.rmtree(holder)
    except BaseException:
        shutil.rmtree(holder, ignore_errors=True)
        raise
    _disown(holder)


def temporary_prefix(path: Path) -> str:
    """The start of a temporary name beside `path`: hidden, and naming this process's pid for people to read (never
    taken for whether its writer lives: `_MADE`)."""
    return f".{path.name}.{os.getpid()}."


# The temporaries and asides this process made and has not let go of, by `_made_key`. Under an output's lock
# (bbuvl/outputs.py) no other process writes that output, so every other temporary of it is a killed writer's.
_MADE: set[tuple[int, int, str]] = set()


def _made_key(path: Path) -> tuple[int, int, str]:
    """(device, inode) of `path`'s folder and its name: a temporary made through one spelling of the folder (a link,
    a relative path) is found through another. A stat: resolving the folder's links instead cost 64 us a write (made
    and let go), the stat 10 us (means of 20,000, the shared 2-core machine)."""
    found = os.stat(path.parent)
    return found.st_dev, found.st_ino, path.name


def _own(path: Path) -> Path:
    """Record `path`, a temporary or aside this process has just made, as its own; returns it."""
    _MADE.add(_made_key(path))
    return path


def _disown(path: Path) -> None:
    """Forget `path` as this process's own: renamed into place, or removed."""
    try:
        _MADE.discard(_made_key(path))
    except OSError:  # its folder gone too: nothing of it to take for a dead writer's
        pass


def made_here(path: Path) -> bool:
    """Whether this process made the temporary or aside `path` and still has it (`temporary_folder`, `atomic_path`)."""
    try:
        return _made_key(path) in _MADE
    except OSError:  # its folder gone meanwhile: nothing there to remove
        return False


def temporary_folder(path: Path, suffix: str = ".tmp") -> Path:
    """A new empty hidden folder beside `path`, `.NAME.PID.XXXXXXXX{suffix}`, recorded as this process's own, so that
    `remove_dead_writers_temporaries` by this process never takes it for a dead writer's."""
    return _own(Path(tempfile.mkdtemp(prefix=temporary_prefix(path), suffix=suffix, dir=path.parent)))


RANDOM_CHARS = 8  # what mkstemp and mkdtemp put between the prefix and the suffix


def temporary_name(name: str = ".+") -> re.Pattern[str]:
    """The names temporary_prefix and mkstemp/mkdtemp give the temporaries of an output named `name` (a regular
    expression; any output's by default), the writer's pid as group 1."""
    return re.compile(rf"\.{name}\.(\d+)\.[a-z0-9_]{{{RANDOM_CHARS}}}\.tmp(\.[^.]*)?")


_TEMPORARY = temporary_name("(.+)")


def name_or_temporary(name: str) -> str:
    """A regular expression of the file names `name` (one of its own) matches, and of their writers' temporaries
    beside them: what a command writes into a folder it replaces whole, killed part-way or not."""
    return rf"(?:{name}|{temporary_name(name).pattern})"


def temporary_of(name: str) -> str | None:
    """The name `name` is a writer's temporary of (`sub/.a.jpg.PID.XXXXXXXX.tmp.jpg` -> `sub/a.jpg`), else None."""
    head, _, base = name.rpartition("/")
    match = _TEMPORARY.fullmatch(base)
    return None if match is None else f"{head}/{match.group(1)}" if head else match.group(1)


# Digits of the longest pid: Linux's pid_max is at most 4194304.
PID_DIGITS = 7


def temporary_name_bytes(path: Path, file: bool = True) -> int:
    """Bytes of the longest temporary name a writer writes beside `path` (a `file`'s keeps its extension), its pid
    counted at `PID_DIGITS`: counted at this process's, a name that fit was refused by a resume of a longer pid, after
    its model had loaded, and the longest name a refusal advised changed from one run to the next."""
    return (len(os.fsencode(f".{path.name}.")) + PID_DIGITS + 1 + RANDOM_CHARS + len(".tmp")
            + (len(os.fsencode(path.suffix)) if file else 0))


def remove_path(path: Path, ignore_errors: bool = False) -> None:
    """Remove the file, folder or link at `path` (a link itself, never what it names); nothing when there is none."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    elif os.path.lexists(path):
        path.unlink(missing_ok=True)


# Temporaries of failed writes that could not be removed then (under a low `ulimit -n` no descriptor was left to list
# a folder with): removed again once the command has let go of its outputs (outputs.py, `Claim.release`).
_LEFT: list[Path] = []


def _discard(tmp: Path) -> None:
    """Remove the temporary `tmp` of a write that failed; kept for `remove_left_temporaries` when that fails too, never
    raising over the write's own error."""
    try:
        remove_path(tmp)
    except OSError:
        _LEFT.append(tmp)  # still this process's own until removed
        return
    _disown(tmp)


def remove_left_temporaries(forget: bool = False) -> list[tuple[Path, OSError]]:
    """Remove again the temporaries `_discard` could not; returns each still left with why, kept to try again later
    unless `forget` (the next writer of its output removes it, as a dead writer's)."""
    still: list[tuple[Path, OSError]] = []
    for tmp in list(_LEFT):
        try:
            remove_path(tmp)
        except OSError as e:
            still.append((tmp, e))
            continue
        _LEFT.remove(tmp)
        _disown(tmp)
    if forget:
        for tmp in _LEFT:  # the next writer of its output removes it as a dead writer's
            _disown(tmp)
        _LEFT.clear()
    return still


def _set_aside_name(name: str) -> re.Pattern[str]:
    """The names `_set_aside` gives what it sets aside for an output named `name` (a regular expression), the
    writer's pid as group 1 and the kind as group 2."""
    return re.compile(rf"\.{name}\.(\d+)\.[a-z0-9_]{{{RANDOM_CHARS}}}\.({REPLACED}|{REMOVED})")


def _dead_writers_asides(folder: Path, name: str | None = None) -> list[tuple[Path, str]]:
    """The folders other writers set aside in `folder` for the output `name` (any output's when None), each with its
    kind; links are never taken for one. Dead writers' to a caller holding the output's lock (bbuvl/outputs.py), which
    no other process writes: whatever pid their names carry, which in a container is pid 1 for every writer."""
    ours = _set_aside_name(".+" if name is None else re.escape(name))
    found = [(left, match.group(2)) for left in sorted(folder.glob(f".{'*' if name is None else glob.escape(name)}.*"))
             if (match := ours.fullmatch(left.name)) is not None and not made_here(left)]
    return [(left, kind) for left, kind in found if left.is_dir() and not left.is_symlink()]


def set_aside_by_dead_writers(path: str | Path) -> list[Path]:
    """The previous folders of `path` that writers killed between `replace_folder`'s two renames left aside whole: every
    one of another process, so a caller not holding `path` asks first whether a writer is at work on it (a reader:
    model/checkpoint.py `stopped_swap`)."""
    path = Path(path)
    return [left / path.name for left, kind in _dead_writers_asides(path.parent, path.name)
            if kind == REPLACED and (left / path.name).is_dir() and not (left / path.name).is_symlink()]


def remove_dead_removals(folder: Path) -> list[Path]:
    """Remove what removers of folders in `folder` left aside when killed before they finished (`remove_whole`): nothing
    of it is read; returns what was removed. Call it holding `folder`'s lock (bbuvl/outputs.py): every remover's but
    this process's goes."""
    removed = [left for left, kind in _dead_writers_asides(folder) if kind == REMOVED]
    for left in removed:
        remove_path(left, ignore_errors=True)
    return removed


def remove_dead_writers_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary files and folders a writer of `path` killed before it could clean up left beside it, first
    putting back under `path` the previous folder one killed between `replace_folder`'s two renames left aside;
    returns what was removed. Call it holding `path`'s lock, or a folder's holding it (bbuvl/outputs.py: no other
    process writes it then): every temporary of `path` but this process's own goes, whatever pid its name carries."""
    path = Path(path)
    removed = []
    for left, kind in _dead_writers_asides(path.parent, path.name):
        kept = left / path.name
        if kind == REPLACED and not os.path.lexists(path) and kept.is_dir() and not kept.is_symlink():
            os.rename(kept, path)  # the previous folder, whole, goes back under its name
        remove_path(left, ignore_errors=True)
        removed.append(left)
    ours = temporary_name(re.escape(path.name))  # exactly this output's temporaries: not another output's
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        if ours.fullmatch(tmp.name) is None or made_here(tmp):
            continue
        remove_path(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def save_atomic(path: str | Path, save: Callable[[BinaryIO], object], sync: bool = True) -> Path:
    """Write what `save(file)` writes (`lambda fh: image.save(fh, "JPEG")`, a figure's `savefig`; the format named,
    as a buffer has no file name) to `path` atomically, encoded in memory first; returns the path. `sync`: as
    `atomic_path`'s."""
    buffer = io.BytesIO()
    save(buffer)
    return write_bytes_atomic(path, buffer.getvalue(), sync)


# The errnos of a write that found no room: a full disk, a used-up quota, a file past the size limit (`ulimit -f`, FAT32's
# 4 GiB). Room made, the command run again goes on.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# Rust's std::io::Error as safetensors words it: "I/O error: File too large (os error 27)".
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
# torch's zip writer (torch.save) checks only that its bytes are where it meant them to be: a full disk, a used-up
# quota and a file-size limit all read "[enforce fail at inline_container.cc:672] . unexpected pos 9364096 vs
# 9363984" (torch 2.13; its C++ stream's "basic_ios::clear: iostream error" before it), or "PytorchStreamWriter failed
# writing file data/0: file write failed", with no errno.
_TORCH_WRITE_FAILED = re.compile(r"unexpected pos \d+ vs \d+|PytorchStreamWriter failed writing|file write failed|"
                                 r"basic_ios::clear")
# What a write tried again beside a failed one writes: more than a file's last block can hold. Random, so that a
# compressing filesystem (ZFS, btrfs) cannot store it in less.
PROBE_BYTES = 1 << 20


def failed_write_errno(e: BaseException, where: Path | None = None) -> int | None:
    """The errno of a failed write: an OSError's, or one a library words its own way (safetensors' "(os error 28)").
    A library that says only that its write failed (torch's zip writer) is answered by the disk: `where`, the file or
    folder it was writing, still as the failed write left it, is asked what a write there meets now (`errno_now`)."""
    if isinstance(e, OSError):
        return e.errno
    text = str(e)
    if (said := _OS_ERROR.search(text)) is not None:
        return int(said.group(1))
    if "No space left on device" in text:
        return errno.ENOSPC
    if where is not None and _TORCH_WRITE_FAILED.search(text) is not None:
        return errno_now(where)
    return None


def errno_now(where: Path) -> int | None:
    """The errno a write into `where` (a file, or a folder of files) meets now: EFBIG when its largest file has reached
    the most bytes a file may hold there (`file_size_limit`), else that of writing PROBE_BYTES beside it (ENOSPC,
    EDQUOT, EROFS, EIO); None when that is written."""
    files = [where] if where.is_file() else [p for p in where.rglob("*") if p.is_file()] if where.is_dir() else []
    folder = where if where.is_dir() else where.parent
    if not folder.is_dir():  # gone since: nothing there to ask
        return None
    limit = file_size_limit(folder)
    if limit is not None and any(_size(f) >= limit for f in files):
        return errno.EFBIG
    try:
        # An unnamed file (O_TMPFILE), gone when closed: a stop here leaves nothing behind
        with tempfile.TemporaryFile(dir=folder) as fh:
            fh.write(os.urandom(PROBE_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as probe:
        return probe.errno
    return None


def file_size_limit(folder: Path) -> int | None:
    """The most bytes one file written by this process may hold in `folder`, None for no limit: `ulimit -f`, and a
    filesystem's own limit where it has one (FAT32: 4 GiB less a byte, which glibc gives as 32 bits)."""
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    limits = [] if soft == resource.RLIM_INFINITY else [soft]
    try:
        bits = os.pathconf(folder, "PC_FILESIZEBITS")
    except (OSError, ValueError):  # a system or folder that does not say
        bits = 64
    if 0 < bits < 64:
        limits.append(2**bits - 1)
    return min(limits) if limits else None


def _size(file: Path) -> int:
    """The size of `file`, 0 when it is gone."""
    try:
        return file.stat().st_size
    except OSError:
        return 0


class WriteFailed(OSError):
    """A write that failed: `message` names its file or folder, why and what is kept; `why` is the first cause's words.
    OSError's own (code, message) arguments, so that it crosses a process pool as it was raised."""

    def __init__(self, code: int, message: str, why: str = ""):
        super().__init__(code, message)
        self.why = why or message


def _why(e: BaseException, code: int) -> str:
    """Why a write failed, in words: `e`'s own, or `code`'s where `e` is a library's (safetensors', torch's)."""
    # A picture written inside a folder being written: the folder says why in the picture's first cause's words, not
    # "writing failed (...: writing failed (No space left on device); ...); ..." nested in it.
    if isinstance(e, WriteFailed):
        return e.why
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return os.strerror(code)
