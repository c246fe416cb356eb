"""Owning a predictions file: recognise our own output, lock it against a second run, repair it on resume.

`bbuvl predict` appends to its output so that a killed run continues where it stopped. Appending is only
safe to a file predict wrote itself, for the same input, checkpoint and mode, and only by one process at
a time. So beside `OUT` live:

    OUT.predict.json   the manifest: which input, checkpoint and mode the lines came from (a line's
                   `image` is relative to that input: `prediction_root`), and the resume key: everything
                   that decides a line, by content (infer/resume_key.py)
    .OUT.lock          held (flock) by the running process, with its pid in it (bbuvl/outputs.py)

Any other existing file is refused, never appended to, and so is one written with another key: one file
never mixes two runs' lines. On resume the file is repaired first: a line cut
short by a kill or a full disk, a damaged line, a line eval would not read (a hand edit: a box of strings;
infer/prediction_lines.py reads it for both), or a second line for one image is dropped (atomically, by
rewriting the file) and its photo predicted again, so eval always reads it and every image appears once. So is a line
other than the one predict left for its photo, as the manifest records it (`record_lines`): edited by hand, or the
file replaced by another run's lines of the same photos, which were kept under this run's manifest.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bbuvl.atomic import write_bytes_atomic, write_text_atomic
from bbuvl.data.input_paths import NOTHING_THERE, file_kind
from bbuvl.data.jsonfile import DuplicateKeyError, dumps_json, parse_json, read_json
from bbuvl.data.schema import DatasetError
from bbuvl.outputs import PREDICT_MANIFEST_SUFFIX, OutputConflict
from bbuvl.outputs import OutputLock as _OutputLock
from bbuvl.outputs import check_name_room as check_output_name_room
from bbuvl.infer.prediction_lines import prediction_line
from bbuvl.infer.resume_key import ResumeKey, differences
from bbuvl.paths import real_path

MANIFEST_SUFFIX = PREDICT_MANIFEST_SUFFIX  # bbuvl/outputs.py refuses it as any command's output beside its file
TOOL = "bbuvl predict"
# Who writes a predictions file with no manifest beside it: predict has written one since manifests came in, and the
# bbu-vl before them wrote the same lines without one, so such a file may well be predict's own.
NO_MANIFEST = "written by another tool or by a bbu-vl older than manifests"


class OutputError(ValueError):
    """The output path cannot be used: not ours, written for other inputs, or locked by another run."""


@dataclass(frozen=True)
class Manifest:
    """What a predictions file holds lines for."""

    input: str
    checkpoint: str
    mode: str
    tool: str = TOOL
    # Everything that decides a line, by content; None only for library callers that name their inputs by path
    # alone (then the paths and the mode are compared, as before keys existed).
    key: ResumeKey | None = None

    def to_json(self) -> dict[str, Any]:
        """The manifest file's content."""
        data = {k: v for k, v in asdict(self).items() if k != "key"}
        return data | ({"key": self.key.to_json()} if self.key is not None else {})


def manifest_path(out: Path) -> Path:
    """The sidecar manifest of a predictions file."""
    return out.with_name(out.name + MANIFEST_SUFFIX)


def check_output(out: Path, manifest: Manifest) -> bool:
    """Raise OutputError when `out` is not ours to append to (naming why, and what to do); True when it has lines.

    A missing or empty file is free; one with lines must carry a manifest for the same input, checkpoint
    and mode.
    """
    found = check_ours(out)
    if found is None:
        return False
    mpath = manifest_path(out)
    if (found.key is None) != (manifest.key is None):
        raise OutputError(f"{out}: its manifest {mpath.name} was written by an older bbu-vl that did not record what "
                          "decides its lines (the input, checkpoint and options by content), so resuming it could mix two "
                          "runs; choose another --out, or pass --overwrite to start it over")
    if manifest.key is not None:
        diff = "; ".join(differences(found.key, manifest.key))
    else:
        diff = ", ".join(f"{k} {getattr(found, k)!r} (now {getattr(manifest, k)!r})"
                         for k in ("input", "checkpoint", "mode") if getattr(found, k) != getattr(manifest, k))
    if diff:
        parts = [p.name for p in rank_parts(out) if p.stat().st_size > 0]
        where = f" (in the part files of a sharded run, not merged yet: {', '.join(parts)})" if parts else ""
        raise OutputError(f"{out}: holds predictions of another run{where} ({diff}); resuming would mix two runs in one "
                          "file. Choose another --out, or pass --overwrite to start it over (with its part files)")
    return True


def check_ours(out: Path) -> Manifest | None:
    """The manifest of predictions `out` holds (None when it holds none: missing or empty); OutputError when `out` is
    a folder, or holds lines with no manifest beside them. Cheap: nothing but the manifest is read."""
    check_plain_file(out)
    if not has_lines(out):
        check_manifest_name(out)
        return None
    mpath = manifest_path(out)
    check_plain_file(mpath)
    if not mpath.exists():
        raise OutputError(f"{out}: exists with no manifest beside it ({mpath.name}): {NO_MANIFEST}, so what decided "
                          "its lines is not known; refusing to append to it. Choose another --out, or pass --overwrite "
                          "to start it over")
    return _read_manifest(mpath)


def check_manifest_name(out: Path) -> None:
    """OutputError when the name `out`'s manifest is kept under holds a file `bbuvl predict` did not write, and `out`
    holds no predictions it could belong to: writing the manifest replaced that file (and --overwrite deleted it)."""
    mpath = manifest_path(out)
    check_plain_file(mpath)
    if has_lines(out) or not mpath.exists():
        return  # a damaged manifest beside predictions is `check_ours`'s to name, and --overwrite's to start over
    try:
        _read_manifest(mpath)
    except OutputError:
        raise OutputError(f"{mpath}: a file `{TOOL}` did not write, under the name it keeps the manifest of --out "
                          f"{out} in; move it away, or choose another --out") from None


def rank_parts(out: Path) -> list[Path]:
    """The part files ranks of a sharded run (`torchrun`) write beside `out` until rank 0 merges them, of any rank
    count (`OUT.rank1-of-2`; infer/batch.py's `part_path`)."""
    pattern = re.compile(rf"{re.escape(out.name)}\.rank\d+-of-\d+")
    return sorted(p for p in out.parent.glob(f"{glob.escape(out.name)}.rank*-of-*") if pattern.fullmatch(p.name))


def has_lines(out: Path) -> bool:
    """Whether `out` holds predictions: lines in it, or in the part files of a sharded run not merged yet (killed, or
    a rank still at work); either ties it to its manifest's run (a new run with other settings merged a killed run's
    parts with its own lines, under its own manifest)."""
    return any(p.is_file() and p.stat().st_size > 0 for p in [out, *rank_parts(out)])


def claim_output(out: Path, manifest: Manifest) -> None:
    """Make `out` ours to append to (writing its manifest), or raise OutputError like `check_output`."""
    has_lines = check_output(out, manifest)
    if not has_lines or manifest.key is not None:
        # Rewritten on resume too: the same content under new paths, and the stats each digest was taken at.
        write_manifest(out, manifest)


def write_manifest(out: Path, manifest: Manifest) -> None:
    """Write `out`'s manifest (atomically)."""
    # dumps_json: the input and checkpoint of a folder named in bytes that are not UTF-8 (GBK) are kept as JSON
    # escapes, which read back as the same paths; writing them failed with a codec error naming no file.
    write_text_atomic(manifest_path(out), dumps_json(manifest.to_json(), indent=1) + "\n")


def read_manifest(out: Path) -> Manifest | None:
    """The manifest beside a predictions file, None when there is none (another tool's file, or an older bbu-vl's)."""
    mpath = manifest_path(Path(out))
    return _read_manifest(mpath) if mpath.exists() else None


def input_root(path: str | Path) -> Path:
    """The folder a predict input's photo names are relative to: the input folder itself, or the JSONL's folder."""
    path = Path(path)
    return real_path(path) if path.is_dir() else real_path(path).parent


def prediction_root(out: str | Path) -> Path:
    """The folder a predictions file's photo names are relative to: its predict input's (the manifest beside it
    says which), else, for a file predict did not write, the file's own folder."""
    manifest = read_manifest(Path(out))
    return input_root(manifest.input) if manifest is not None else real_path(out).parent


def check_name_room(out: Path) -> None:
    """OutputError when --out's name or path leaves no room for what predict writes beside it: its manifest, written
    through a temporary name 27 bytes longer still (atomic.py). A name near the limit, or a path near PATH_MAX, failed
    after the model had loaded, with nothing predicted; a name past it was a traceback."""
    if not out.name:  # '.', '/': a folder, named as one by `check_plain_file`
        return
    try:
        check_output_name_room(out, out, beside=[manifest_path(out)])
    except OutputConflict as e:
        raise OutputError(str(e)) from None


def check_plain_file(path: Path) -> None:
    """OutputError when `path` exists and is no regular file: a folder, or a FIFO, device or socket, whose size
    of 0 would read as an empty output that is free to write (a FIFO hangs the first write, and --overwrite would
    delete a device such as /dev/null)."""
    kind = file_kind(path)
    if kind == "a folder":
        raise OutputError(f"{path}: is a folder; --out takes a file name such as {path / 'predictions.jsonl'}")
    if kind is not None and kind not in NOTHING_THERE:
        raise OutputError(f"{path}: is {kind}, not a file predict can write and resume; --out takes a regular file's name")


def discard_output(out: Path) -> None:
    """Start over (`--overwrite`): remove a predictions file, the part files of a sharded run and its manifest, unless
    another run is writing one of them."""
    check_plain_file(out)
    check_manifest_name(out)
    with ExitStack() as stack:
        parts = rank_parts(out)
        for held in [out, *parts]:  # a rank still writing its part keeps it, and the output, as they are
            stack.enter_context(OutputLock(held))
        for path in [out, *parts, manifest_path(out), *map(manifest_path, parts)]:
            path.unlink(missing_ok=True)


def part_differences(part: Path, manifest: Manifest) -> str | None:
    """How the run that wrote sharded part `part` differs from `manifest`'s (its own manifest beside it, written by its
    rank), or None when they are the same run, or the part has none (written before ranks recorded theirs)."""
    found = read_manifest(part)
    if found is None or found.key is None or manifest.key is None:
        return None
    return "; ".join(differences(found.key, manifest.key)) or None


def _read_manifest(path: Path) -> Manifest:
    try:
        data: Any = read_json(path)
        if data.get("tool") != TOOL:
            raise ValueError
        key = ResumeKey.from_json(data["key"]) if "key" in data else None
        return Manifest(input=data["input"], checkpoint=data["checkpoint"], mode=data["mode"], key=key)
    except (ValueError, KeyError, TypeError, AttributeError):
        # Read by eval and viz too, where deleting the predictions would lose them for nothing.
        raise OutputError(f"{path}: not a `{TOOL}` manifest, so the predictions beside it cannot be tied to their input; "
                          "remove it to read them as another tool's (photo names relative to their own folder), or "
                          "re-run `bbuvl predict` with --overwrite to start them over") from None


class OutputLock(_OutputLock):
    """The lock every writer takes on its output (bbuvl/outputs.py), for a predictions file: a second run fails
    naming the first's pid, as an OutputError."""

    def __init__(self, out: Path):
        super().__init__(out, "predict")

    def acquire(self) -> "OutputLock":
        """Take the lock, or raise OutputError naming the process that holds it."""
        try:
            super().acquire()
        except OutputConflict as e:
            raise OutputError(str(e)) from None
        return self


@dataclass
class Repair:
    """What resuming found in an existing predictions file."""

    kept: int = 0
    damaged: int = 0
    duplicates: int = 0
    unreadable: list[str] = field(default_factory=list)  # "file:line: why" of each whole line eval would not read
    foreign: int = 0  # lines other than the one predict left for their photo (`record_lines`), named in `unreadable`

    @property
    def changed(self) -> bool:
        """True when the file had to be rewritten."""
        return bool(self.damaged or self.duplicates or self.foreign)


def repair_output(path: Path, rewrite: bool = True, recorded: dict[str, str] | None = None) -> tuple[set[str], Repair]:
    """The images already predicted in `path`, after dropping damaged and repeated lines (file rewritten atomically).

    A damaged line is one that is not a JSON object with an `image` (cut short by a kill or a full disk,
    or garbled), or one eval would not read (`prediction_line`: a hand-edited box of strings, named in
    `Repair.unreadable`); its image is predicted again. Of two lines for one image the later is kept. So is a line
    whose photo `recorded` (`recorded_lines`) gives another line's digest: not the one predict left there. With
    `rewrite=False` the file is only read (another process owns it).
    """
    report = Repair()
    if not path.exists():
        return set(), report
    raw = path.read_bytes()
    kept: dict[str, tuple[int, bytes]] = {}
    for no, line in enumerate(raw.splitlines(), 1):  # numbered as eval numbers them (universal newlines)
        if not line.strip():
            continue
        image = _image_of(line, path, no, report)
        if image is None:
            report.damaged += 1
            continue
        if image in kept:
            report.duplicates += 1
            del kept[image]  # the later line wins and takes its place in order
        kept[image] = (no, line)
    for image, (no, line) in list(kept.items()):
        if (recorded or {}).get(image, line_digest(line)) != line_digest(line):
            report.foreign += 1
            report.unreadable.append(str(DatasetError(path, no, f"image {image}: not the line `{TOOL}` left for it "
                                                                "(its manifest records another: the file was edited "
                                                                "or replaced since)")))
            del kept[image]
    report.kept = len(kept)
    if rewrite and (report.changed or (raw and not raw.endswith(b"\n"))):
        write_bytes_atomic(path, b"".join(line + b"\n" for _, line in kept.values()))
    return set(kept), report


# The manifest's record of the lines predict left in its output: photo name -> `line_digest` of its line.
LINES = "lines"


def line_digest(line: bytes) -> str:
    """A short digest of one predictions line (its bytes, without the line end)."""
    return hashlib.sha256(line.rstrip(b"\r\n")).hexdigest()[:16]


def recorded_lines(out: Path) -> dict[str, str]:
    """The lines predict last left in `out`, as its manifest records them (`record_lines`); empty where none are
    recorded (a manifest of an earlier bbu-vl, a sharded run's, or one a run rewrote at its start and was killed)."""
    try:
        data = read_json(manifest_path(out))
    except (OSError, ValueError):
        return {}
    lines = data.get(LINES) if isinstance(data, dict) else None
    if not isinstance(lines, dict):
        return {}
    return {image: digest for image, digest in lines.items() if isinstance(image, str) and isinstance(digest, str)}


def foreign_lines(out: Path) -> list[tuple[int, str]]:
    """(line number, photo) of each line of `out` other than the one its manifest records for that photo
    (`record_lines`): edited or replaced since predict left it; none where nothing is recorded."""
    recorded = recorded_lines(out)
    if not recorded:
        return []
    found = []
    for no, line in enumerate(out.read_bytes().splitlines(), 1):
        try:
            image = json.loads(line).get("image")
        except (ValueError, UnicodeDecodeError, RecursionError, AttributeError):
            continue  # a line eval cannot read is named by its reader
        if isinstance(image, str) and recorded.get(image, line_digest(line)) != line_digest(line):
            found.append((no, image))
    return found


def record_lines(out: Path) -> None:
    """Record in `out`'s manifest the digest of each line `out` holds now, by photo: on resume a line other than the
    one recorded for its photo is not this run's (`repair_output`). Cheap: one read of the file, one manifest write."""
    mpath = manifest_path(out)
    data = read_json(mpath)
    lines = {}
    for line in out.read_bytes().splitlines() if out.exists() else []:
        try:
            image = json.loads(line).get("image")  # as repair_output found it (parse_json) or predict wrote it
        except (ValueError, UnicodeDecodeError, RecursionError, AttributeError):
            continue
        if isinstance(image, str):
            lines[image] = line_digest(line)
    write_text_atomic(mpath, dumps_json({**data, LINES: lines}, indent=1) + "\n")


def _image_of(line: bytes, path: Path, no: int, report: Repair) -> str | None:
    """The photo line `no` of `path` predicts, None when it is damaged (why in `report` when eval would name it)."""
    try:
        # As eval reads it (iter_json_lines): an integer past 4,300 digits was a ValueError here, taken for a line cut
        # short and predicted again without a word, and a key named twice was read with its last value
        data = parse_json(line)
    except DuplicateKeyError as e:
        report.unreadable.append(str(DatasetError(path, no, f"invalid JSON: {e}")))
        return None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None  # cut short by a kill or a full disk: what a resume is for
    image = data.get("image") if isinstance(data, dict) else None
    if not isinstance(image, str):
        return None
    try:
        prediction_line(data, path, no)
    except DatasetError as e:
        report.unreadable.append(str(e))
        return None
    return image
