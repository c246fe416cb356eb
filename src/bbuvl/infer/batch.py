"""Batch prediction that streams to a JSONL file, resumes after a kill, and shards across processes.

Each finished image becomes one flushed line, naming the photo as the input does: its path relative to the input
folder, or as the dataset JSONL writes it (a symbolic link keeps its own name and is read through); a re-run with the same output skips images already
written (a line cut short by a kill or a full disk is dropped and redone), so nothing is lost or written
twice. Only predict's own output is ever appended to, by one run at a time (infer/output.py).
Under torchrun / accelerate every rank takes every WORLD_SIZE-th image into its own part file; rank 0, once every
rank still writing its part has finished, merges the parts into the output in input order.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from bbuvl.atomic import write_bytes_atomic, write_text_atomic
from bbuvl.data.images import IMAGE_SUFFIXES, suffix_counts
from bbuvl.data.input_paths import spelling_note
from bbuvl.data.jsonfile import jsonl_lines
from bbuvl.data.schema import image_in, once_each, read_lines, require_photos, resolve_image
from bbuvl.data.text import not_text
from bbuvl.infer.output import (Manifest, OutputError, OutputLock, claim_output, input_root, manifest_path,
                               part_differences, rank_parts, read_manifest, record_lines, recorded_lines, repair_output,
                               write_manifest)
from bbuvl.infer.parse import UNREADABLE_ANSWER
from bbuvl.infer.resume_key import ResumeKey
from bbuvl.outputs import writer_at
from bbuvl.paths import real_path

log = logging.getLogger(__name__)


@dataclass
class PredictJob:
    """What to predict and where to write it."""

    inputs: list[str]  # photo names, in order: relative to `root` (or absolute paths, then without a root)
    out: Path
    mode: str = "generate"
    batch_size: int = 4
    source: str = ""  # the input folder or JSONL, for the manifest
    checkpoint: str = ""
    root: Path | None = None  # the folder the names are relative to (`input_root` of the source)
    key: ResumeKey | None = None  # what decides its lines (infer/resume_key.py); None: compared by path alone
    # Where a JSONL input lists each photo ("val.jsonl:12"), for the errors: the photo's name alone sent the user
    # searching the file for the line to fix. Empty for a folder, whose photos are their own names.
    lines: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A script's PredictJob(names, "out.jsonl", ...) gave `out` as a str, which failed far on as "'str'
        # object has no attribute 'parent'": the paths are taken as any path-like (a str, a Path).
        self.out = Path(self.out)
        self.root = Path(self.root) if self.root is not None else None
        self.source, self.checkpoint = os.fspath(self.source), os.fspath(self.checkpoint)

    def photos(self) -> list[tuple[str, Path]]:
        """(name, file) of every photo, for the resume key."""
        return [(name, Path(self.path_of(name))) for name in self.inputs]

    @property
    def manifest(self) -> Manifest:
        """What the output's manifest must say for this job to append to it."""
        return Manifest(input=self.source, checkpoint=self.checkpoint, mode=self.mode, key=self.key)

    def path_of(self, name: str) -> str:
        """The file a photo name stands for, found as data check and training find it (NFC or NFD, `\\` as `/` when
        only that spelling exists); a link stays a link: it is opened, never renamed."""
        return str(image_in(self.root, name)) if self.root is not None else name

    def name_of(self, image: str) -> str:
        """The name an output line's `image` has in this job: an absolute path inside `root` (as earlier versions
        wrote) is made relative, so resuming such an output neither repeats nor loses its photos."""
        if self.root is None or not Path(image).is_absolute():
            return image
        rel = os.path.relpath(image, self.root)
        return image if rel.startswith("..") else Path(rel).as_posix()


def photo_names(path: str | Path, skipped: Counter[str] | None = None, lines: dict[str, str] | None = None) -> list[str]:
    """The photos of a folder (recursive, sorted, relative to it) or a dataset JSONL (student images as it writes
    them, in file order), each named as the user named it: symbolic links are not resolved, so two links to one
    file are two photos with their own names. A folder's other files are counted into `skipped` by suffix; a
    JSONL's line of each photo goes into `lines` ("val.jsonl:12")."""
    path = Path(path)
    if path.is_dir():
        skipped = Counter() if skipped is None else skipped
        names = folder_photos(path, skipped)
        if not names:  # "done: 0 predicted" would read as success
            others = f"; it holds {suffix_counts(skipped)}" if skipped else ""
            raise ValueError(f"{path}: no photos in this folder (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, "
                             f"in subfolders too{others})")
        refuse_names_no_line_holds(path, names)
        return names
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder{pattern_note(path)}")
    refuse_other_inputs(path)
    # A photo on two lines would get two output lines of one name, and a resume would keep one of them.
    rows = once_each(read_lines(path), path)
    refuse_every_photo_gone(path, rows)
    if lines is not None:
        lines.update((sample.student.image, f"{path}:{line}") for line, sample in rows)
    return require_photos([sample.student.image for _, sample in rows], path)


def refuse_every_photo_gone(path: Path, rows: list[tuple[int, Any]]) -> None:
    """ValueError naming a dataset JSONL's first line when not one photo it lists is there (a JSONL copied without its
    images/, a dataset whose photos moved): predict loaded the model, wrote an error line for each photo and exited 0,
    each error naming the photo alone, not the file and line that list it."""
    if not rows or any(resolve_image(path, sample.student.image).exists() for _, sample in rows):
        return
    line, first = rows[0]
    note = spelling_note(resolve_image(path, first.student.image))
    others = ("" if len(rows) == 1 else ", nor the other photo it lists" if len(rows) == 2 else
              f", nor any of the other {len(rows) - 1} photos it lists")
    raise ValueError(f"{path}:{line}: image {first.student.image}: image file not found{others} (photo paths are read "
                     f"relative to {real_path(path).parent}): give the dataset where its photos are, or its images "
                     f"folder{note}")


def pattern_note(path: Path) -> str:
    """What to give instead when `path`, not there, is a pattern (`'site/*.jpg'` quoted, so the shell left it): predict
    reads a folder or a JSONL, never a pattern; "" otherwise."""
    if not any(c in str(path) for c in "*?["):
        return ""
    folder = next((p for p in path.parents if not any(c in str(p) for c in "*?[")), Path("."))
    return (f"; --input takes no pattern: give the folder of the photos ({folder}; its subfolders are read too), "
            "or a dataset JSONL that lists them")


def refuse_other_inputs(path: Path) -> None:
    """ValueError naming what `path` is when it is a file predict is often given by mistake: one photo (read as JSONL
    it was 'not UTF-8 text (byte 0xff at column 1)'), or a predictions file (every key of its first line 'unknown')."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: a photo; --input takes a folder of photos or a dataset JSONL: give its folder "
                         f"({path.parent}), or a JSONL that lists it")
    if (first := photo_listed_first(path)) is not None:
        raise ValueError(f"{path}: a list of photo paths (line 1: {first}), not a dataset JSONL; --input takes a folder "
                         "of photos or a dataset JSONL: put the photos (or links to them) in one folder and give it")
    try:
        made = read_manifest(path)
    except ValueError:  # a damaged manifest beside it says nothing of what it is: read as the dataset it may be
        made = None
    if made is not None:
        raise ValueError(f"{path}: predictions written by `bbuvl predict`, not a dataset; give the photos they were "
                         f"predicted from ({made.input})")


def photo_listed_first(path: Path) -> str | None:
    """The first line of `path` when it names a photo rather than holding a JSON object (a list of paths, as `ls` or
    `find` writes one), else None. Read as JSONL, such a list was 'list.txt:1: invalid JSON: Expecting value at
    column 1', which said nothing of what to give instead."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:  # unreadable: the dataset reader names why
        return None
    first = next((line.strip() for line in head.decode("utf-8", "replace").splitlines() if line.strip()), "")
    return first if first[:1] not in ("", "{") and PurePosixPath(first).suffix.lower() in IMAGE_SUFFIXES else None


def refuse_names_no_line_holds(folder: Path, names: list[str]) -> None:
    """ValueError naming the photos whose names are no UTF-8 text (data/text.py, `not_text`), before any model loads:
    no predictions line or manifest can hold them, and the first write failed the whole run on a codec error that
    named no file."""
    bad = [problem for name in names if (problem := not_text(name)) is not None]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ValueError(f"{folder}: {len(bad)} photo name(s) a predictions file cannot hold: {bad[0]}{more}")


def folder_photos(folder: Path, skipped: Counter[str] | None = None) -> list[str]:
    """The photo names under `folder` (sorted, relative to it), through links: a linked subfolder's photos are named
    by the link, a link to a missing photo is listed so that its line says it is missing, and a link back to a folder
    it sits in (a loop, or `/`) is not entered; a pipe or device named like a photo is listed, for its line to say
    what it is. Hidden files and folders are left out, as `data convert` leaves them: macOS's `._IMG_1.jpg`
    companions on a copied card were each an error line, `.ipynb_checkpoints/` copies were predicted twice. Other
    files are counted into `skipped` by their lower-case suffix ("" for none)."""
    names: list[str] = []

    def walk(directory: str, rel: PurePosixPath, chain: tuple[Path, ...]) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if _is_folder(entry):  # a link to a folder too: `site3 -> /mnt/nas/site3` was skipped without a word
                    real = Path(os.path.realpath(entry.path))
                    if not any(c == real or c.is_relative_to(real) for c in chain):
                        walk(entry.path, rel / entry.name, (*chain, real))
                elif PurePosixPath(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                    # a pipe, socket or device named like a photo too, its line saying what it is: it was counted among
                    # the files of other formats, "convert others to JPEG or PNG", and left out
                    names.append((rel / entry.name).as_posix())
                elif skipped is not None:
                    skipped[PurePosixPath(entry.name).suffix.lower()] += 1

    walk(str(folder), PurePosixPath(), (Path(os.path.realpath(folder)),))
    return sorted(names, key=PurePosixPath)


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link to itself (ELOOP): listed as a photo, whose line says why it cannot be read
        return False


def list_inputs(path: str | Path) -> list[str]:
    """Absolute paths of the photos `photo_names` lists (links not resolved)."""
    root = input_root(path)
    return [str(root / name) for name in photo_names(path)]


def rank_world() -> tuple[int, int]:
    """This process's (RANK, WORLD_SIZE) as torchrun sets them ((0, 1) when unset); ValueError naming the variables
    when they are no rank of a world: WORLD_SIZE=0 was a ZeroDivisionError, a rank past the world predicted nothing
    and said done."""
    text = {name: os.environ.get(name, default).strip() for name, default in (("RANK", "0"), ("WORLD_SIZE", "1"))}
    try:
        rank, world = int(text["RANK"]), int(text["WORLD_SIZE"])
    except ValueError:
        rank = world = -1
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={text['RANK']!r} WORLD_SIZE={text['WORLD_SIZE']!r} in the environment are no rank of a "
                         "world (WORLD_SIZE a whole number from 1, RANK from 0 to WORLD_SIZE - 1): torchrun sets both; "
                         "unset them to predict in one process")
    return rank, world


def part_path(out: Path, rank: int, world: int) -> Path:
    """The file a rank writes to (the output itself when not sharded)."""
    return out if world == 1 else out.with_name(f"{out.name}.rank{rank}-of-{world}")


def other_worlds_parts(out: Path, world: int) -> list[Path]:
    """The part files beside `out` of a killed sharded run with another rank count: their lines count as done in this
    run, and rank 0 merges them with its own world's parts (a sharded run of 1 merges every part, `run_predictions`)."""
    return [p for p in rank_parts(out) if not p.name.endswith(f"-of-{world}")]


def _done_in(parts: list[Path]) -> set[str]:
    """The photos (as their lines name them) with a whole line in `parts`, none rewritten."""
    done: set[str] = set()
    for part in parts:
        done |= repair_output(part, rewrite=False)[0]
    return done


def batched(items: list[str], n: int) -> Iterator[list[str]]:
    """Consecutive chunks of `n`."""
    for i in range(0, len(items), n):
        yield items[i : i + n]


def run_predictions(job: PredictJob, predict: Callable[[list[str]], list[dict]],
                    on_progress: Callable[[int, int], None] | None = None,
                    on_wait: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Predict every input not yet in the output (this rank's share), appending one line per image as it goes.

    `predict(paths) -> lines` must return one JSON-ready dict per path (with an "error" for a failed image)
    and never raise for a bad image; each line's `image` is then set to the photo's name in the job. `on_wait`
    hears, on rank 0 of a sharded run, which ranks it still waits for before the merge (`wait_for_ranks`).
    """
    rank, world = rank_world()
    job.out.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(job.out, rank, world)
    # Rank 0 of a sharded run also holds the output's lock: it merges into the output at the end.
    locks = [OutputLock(p) for p in dict.fromkeys([part] + ([job.out] if rank == 0 else []))]
    with ExitStack() as stack:
        for lock in locks:
            stack.enter_context(lock)
        # What the last run left in the output, read before this run's manifest replaces the record (`record_lines`)
        recorded = recorded_lines(job.out) if world == 1 else {}
        claim_output(job.out, job.manifest)
        if part != job.out:
            # Each rank records its own run beside its part: ranks started together all found --out free, and rank 0
            # merged parts of two settings, or two checkpoints, under one manifest (`merge_parts` compares them)
            claim_output(part, job.manifest)
        if world == 1 and (parts := rank_parts(job.out)):
            # A killed sharded run's parts, of this run's key (check_output compared it): their lines count as done,
            # where they were predicted again and the parts left beside the output. A rank still writing one holds
            # its lock, and this run is refused.
            for p in parts:
                stack.enter_context(OutputLock(p))
            merge_parts(job, parts)
        # Resumed under another rank count: another world's parts were predicted again, and left beside the output
        stale = other_worlds_parts(job.out, world) if world > 1 else []
        for p in stale if rank == 0 else []:
            stack.enter_context(OutputLock(p))  # merged by rank 0 at the end; a rank still writing one is refused
        done, repaired = repair_output(job.out, rewrite=rank == 0, recorded=recorded)
        done |= repair_output(part)[0] if part != job.out else set()
        done |= _done_in(stale)
        done = {job.name_of(image) for image in done}
        # Lines of photos this run's input does not hold (the key says it is the same input: added by hand) would be
        # counted as done and read by eval beside the others; merging a sharded run drops them too.
        others = len(done - set(job.inputs)) if rank == 0 else 0
        if others:
            keep_lines_of(job)
        if world == 1:  # the lines kept, as this run found them: a line changed after it is no longer its
            _record_lines(job.out)
        done &= set(job.inputs)
        share = [p for i, p in enumerate(job.inputs) if i % world == rank]
        todo = [p for p in share if p not in done]
        start, written, cut = time.perf_counter(), 0, 0
        failed: list[str] = []  # "name: error" of each photo this run could not predict
        unanswered = 0  # of them, photos the model gave no answer for (an answer nothing could be read from is one)
        # Unbuffered: a failed write leaves nothing in a buffer to be written at close. What it wrote before failing
        # stays in the file, a line cut short among it, which the re-run drops and predicts again (`repair_output`).
        own_file(part)
        with part.open("ab", buffering=0) as fh:
            for chunk in batched(todo, job.batch_size):
                paths = [job.path_of(name) for name in chunk]
                lines = predict(paths)
                for line, name in zip(lines, chunk):
                    line["image"] = name
                data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8")
                landed = 0  # bytes of the chunk in the file: a write can land in part before one fails
                try:
                    while landed < len(data):
                        landed += fh.write(data[landed:])
                    os.fsync(fh.fileno())
                except OSError as e:
                    # Counted by whole lines, not chunks: 2 lines and a third cut short had landed where it said 0
                    kept = len(done) + written + data.count(b"\n", 0, landed)
                    raise OSError(e.errno, f"{part}: writing predictions failed ({e.strerror or e}); the {kept} images "
                                  "written whole before are kept (a line cut short after them is dropped): fix the "
                                  "cause and re-run the same command to resume") from e
                failed += [(f"{job.lines[name]}: image {name}" if name in job.lines else name)
                           + f": {str(line['error']).removeprefix(f'{path}: ')}"
                           for name, path, line in zip(chunk, paths, lines) if line.get("error") is not None]
                unanswered += sum(line.get("error") not in (None, UNREADABLE_ANSWER) for line in lines)
                cut += sum(bool(line.get("cut")) for line in lines)
                written += len(chunk)
                if on_progress:
                    on_progress(written, len(todo))
        elapsed = time.perf_counter() - start
        if world == 1:
            _record_lines(job.out)
        if world > 1:
            _merge_when_all_done(job, rank, world, on_wait or log.warning)
        missing = missing_photos(job) if world > 1 and rank == 0 else 0
    # "file:line: why" of each line kept from before that eval would not read: dropped, its photo predicted again
    unreadable = repaired.unreadable if rank == 0 else []
    # This rank's share alone: a late rank 1 said "16 already in --out", rank 0's photos
    return {"skipped": len(share) - len(todo), "dropped": others, "unreadable": unreadable, "predicted": written,
            "missing": missing, "errors": len(failed), "unanswered": unanswered, "failed": failed, "cut": cut,
            "seconds": elapsed, "images_per_s": written / elapsed if elapsed > 0 else 0.0}


def _record_lines(out: Path) -> None:
    """`record_lines`, a failure (a full disk) said as a warning: the predictions are written, and a resume keeps lines
    it has no record of, unchecked, as before records were kept."""
    try:
        record_lines(out)
    except (OSError, ValueError) as e:  # ValueError: a manifest no longer JSON (read_json names it)
        log.warning("%s: the lines of %s could not be recorded (%s); a resume keeps them unchecked", manifest_path(out),
                    out, getattr(e, "strerror", None) or e)


def own_file(path: Path) -> None:
    """Give `path` a file of its own before it is appended to: a hard link's other names (a `cp -al` snapshot of the
    output's folder) saw every line appended, the snapshot changed by a run in another folder. Its bytes are copied to
    a new file under the same name, atomically; a file with one name (or none yet) is left as it is."""
    try:
        links = os.stat(path).st_nlink
    except FileNotFoundError:
        return
    if links > 1:
        write_bytes_atomic(path, path.read_bytes())


def keep_lines_of(job: PredictJob) -> None:
    """Rewrite the output (atomically) with the lines of the job's photos alone, in the order they are in."""
    names = set(job.inputs)
    kept = [line for line in job.out.read_bytes().splitlines() if job.name_of(json.loads(line)["image"]) in names]
    write_text_atomic(job.out, "".join(line.decode("utf-8") + "\n" for line in kept))


def merge_parts(job: PredictJob, parts: list[Path]) -> int:
    """Merge rank part files into the output in input order (each image once), then delete them; returns lines written.
    OutputError, merging nothing, when a part was written by another run than this one (its manifest's key)."""
    for part in parts:
        if part.exists() and (diff := part_differences(part, job.manifest)):
            raise OutputError(f"{part}: written by a rank of another run ({diff}); merged, {job.out} would hold two "
                              "runs' lines under one manifest. Nothing is merged and the parts are kept: start every "
                              "rank with the same checkpoint and options, or pass --overwrite to start over")
    lines: dict[str, str] = {}
    for source in [job.out, *parts]:
        if source.exists():
            repair_output(source)  # drops damaged and cut-short lines
            for line in jsonl_lines(source.read_text(encoding="utf-8")):
                try:
                    lines[job.name_of(json.loads(line)["image"])] = line
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
    write_text_atomic(job.out, "".join(lines[p] + "\n" for p in job.inputs if p in lines))
    write_manifest(job.out, job.manifest)  # the one another rank wrote last is its run's: the same, checked above
    for part in parts:
        part.unlink(missing_ok=True)
        manifest_path(part).unlink(missing_ok=True)
    return sum(p in lines for p in job.inputs)


def _merge_when_all_done(job: PredictJob, rank: int, world: int, say: Callable[[str], None]) -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        if rank == 0:
            merge_parts(job, [part_path(job.out, r, world) for r in range(world)] + other_worlds_parts(job.out, world))
        dist.barrier()
    elif rank == 0:
        # No process group (torchrun starts none; predict needs none): rank 0 waits for every rank still writing its
        # part, then merges. Merged at once, a part another rank was writing was deleted under it: that rank's later
        # lines went to a file no name reached, and the output lacked them without a word. A rank that never started
        # holds no lock: what the others wrote is merged, and a later run (any rank count) completes the rest.
        with ExitStack() as stack:
            for lock in wait_for_ranks(job, world, say):
                stack.callback(lock.release)
            merge_parts(job, [part_path(job.out, r, world) for r in range(world)] + other_worlds_parts(job.out, world))


# How often rank 0 says which ranks it still waits for: a rank's share can take hours, and a silent rank 0 looked hung.
WAIT_NOTE_S = 60.0


class RankStopped(OutputError):
    """A rank of a sharded run stopped before it predicted its share: its part is incomplete, and no rank finishes it."""


def wait_for_ranks(job: PredictJob, world: int, say: Callable[[str], None], every_s: float = WAIT_NOTE_S,
                   poll_s: float = 0.2) -> list[OutputLock]:
    """The locks of ranks 1..world-1's parts, each taken once its rank lets go; `say` hears which ranks it still waits
    for when it starts waiting and every `every_s` seconds after.

    RankStopped, merging nothing and keeping every part, when a rank stopped before it wrote its share (killed, its
    lock file still naming `predict`, or ended by an error with its part begun): merged, its photos would be missing
    from the output with no rank left to predict them.
    """
    waiting = {r: part_path(job.out, r, world) for r in range(1, world)}
    taken: list[OutputLock] = []
    said_at: float | None = None
    try:
        while True:
            for r, part in list(waiting.items()):
                try:
                    lock = OutputLock(part).acquire()
                except OutputError:
                    continue
                taken.append(lock)
                del waiting[r]
                # Its lock let go with its share unwritten: killed (its lock file left), or ended by an error after it
                # began its part. A rank that never began has no part, and what the others wrote is merged.
                if (lock.killed_command is not None or part.exists()) and (left := share_left(job, r, world)):
                    raise RankStopped(stopped_rank(job, r, world, lock, left))
            if not waiting:
                return taken
            if said_at is None or time.monotonic() - said_at >= every_s:
                said_at = time.monotonic()
                say(f"rank 0 of {world}: its share is done; waiting for " + ", ".join(
                    rank_at_work(r, part) for r, part in waiting.items())
                    + f" to finish before it merges the parts into {job.out}")
            time.sleep(poll_s)
    except BaseException:
        for lock in reversed(taken):
            lock.release(restore=True)  # a killed rank's lock file stays, naming it, for the run that redoes its part
        raise


def share_left(job: PredictJob, rank: int, world: int) -> int:
    """How many of rank `rank`'s photos have a line neither in its part nor in the output."""
    done = _done_in([part_path(job.out, rank, world), job.out, *other_worlds_parts(job.out, world)])
    done = {job.name_of(image) for image in done}
    return sum(1 for i, name in enumerate(job.inputs) if i % world == rank and name not in done)


def rank_at_work(rank: int, part: Path) -> str:
    """`rank 1 (pid 123, 40 lines in p.jsonl.rank1-of-2)`: a rank rank 0 waits for, as far as its part tells."""
    writer = writer_at(part)
    pid = f"{writer.who}, " if writer is not None else ""
    try:
        lines = part.read_bytes().count(b"\n")
    except OSError:  # not written yet
        lines = 0
    return f"rank {rank} ({pid}{lines} lines in {part.name})"


def stopped_rank(job: PredictJob, rank: int, world: int, lock: OutputLock, left: int) -> str:
    """Why rank 0 merges nothing: which rank stopped, how much of its share is missing, the parts kept, what to do."""
    pid = f" ({lock.killed.who})" if lock.killed_pid else ""
    kept = [p.name for p in (part_path(job.out, r, world) for r in range(world)) if p.exists()]
    return (f"rank {rank} of {world}{pid} stopped before it predicted its share ({left} of its photos have no "
            f"line in {part_path(job.out, rank, world).name}): nothing is merged into {job.out}, and the part files are "
            f"kept beside it ({', '.join(kept) or 'none written'}); run the same command again, under torchrun or in one "
            "process, and it goes on from them")


def missing_photos(job: PredictJob) -> int:
    """How many of the job's photos have no line in its output (a sharded run's rank that never ran, or was killed)."""
    done, _ = repair_output(job.out, rewrite=False)
    return len(set(job.inputs) - {job.name_of(image) for image in done})
