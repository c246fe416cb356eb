"""What decides a predictions line, so that `bbuvl predict` resumes an output only for the run that wrote it.

A line depends on the photo, the model and how it was asked. So the key is:

- the input by content: every photo's name and SHA-256, in input order (a photo replaced under its name, added
  or removed changes it; the same photos under another path to the input do not);
- the checkpoint by content (model/identity.py; a checkpoint retrained in place changes it, a copy does not);
- the mode and every prediction option (`PredictOptions`, resolved against the checkpoint's defaults), with
  the files a mode reads beside the checkpoint: the teachers JSONL and the photos it shows (teachers mode) and a
  plain model folder's labels and language;
- the program: bbu-vl (its version and its files' digest) and the libraries that compute the answer (versions.py):
  an upgrade between a kill and its resume would leave one file holding two programs' lines.

Left out: the device, the batch size, the path spellings. None chooses what a line finds, though another batch size
may write a box corner 0.1 px or a score 1e-5 apart (float32 sums over another padding; measured in docs/resume.md).
The digests are kept with their stats, so a resume hashes only the files changed since (data/digests.py; costs in
docs/resume.md).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from bbuvl.data.digests import FileDigest, by_name, combined, file_digest
from bbuvl.data.input_paths import NOTHING_THERE, file_kind
from bbuvl.model.identity import identify
from bbuvl.versions import software, software_differences

# Options recorded as the SHA-256 of a file a run reads (`file_key`): a difference is said as a change of content.
FILE_OPTIONS = ("teachers", "labels", "hierarchy")
# Options recorded as one digest over the photos a file names (`photos_key`), and what a change of them is said as.
PHOTO_OPTIONS = {"teacher_photos": "the teachers' photos changed"}
# Why a record of a checkpoint's files that does not add up (`ResumeKey.files_add_up`) was written.
UNSOUND_RECORD = ("written by an older bbuvl, which named a LoRA checkpoint's base model files as the checkpoint's own, "
                  "or edited since: what the checkpoint held then is not known")
UNREADABLE = "unreadable"  # a photo that cannot be read has no digest; its line is an error line, redone on change


def photo_changed(photo: Path, name: str, predicted: FileDigest | None) -> bool:
    """Whether `photo` has other content than `predicted`, the digest predict recorded for the photo it named `name`;
    False when that is unknown or unread, or `photo` cannot be read (left to its reader to name). `photo` is trusted by
    its stat while it is the very file recorded, unchanged (data/digests.py)."""
    if predicted is None or predicted.sha256 == UNREADABLE:
        return False
    try:
        return file_digest(photo, name, {name: predicted}).sha256 != predicted.sha256
    except OSError:
        return False


@dataclass(frozen=True)
class ResumeKey:
    """Everything that decides a predictions line; two runs with equal keys write equal lines."""

    input: str  # digest over (photo name, content) in input order
    checkpoint: str  # ModelIdentity.digest
    mode: str
    options: dict[str, Any]  # every prediction option, plus the digests of the files a mode reads
    photos: list[FileDigest] = field(default_factory=list, compare=False)  # what `input` was made of
    checkpoint_files: list[FileDigest] = field(default_factory=list, compare=False)  # what `checkpoint` was made of
    # The program that wrote the lines (bbuvl/versions.py); empty in a key recorded before keys named it.
    software: dict[str, str] = field(default_factory=dict)

    def files_add_up(self) -> bool:
        """Whether `checkpoint_files` make the `checkpoint` digest they were taken for (True when none are recorded).

        A bbuvl before data/digests.py named every digest by the name it was asked for recorded a LoRA checkpoint's
        trained base files under the checkpoint's own names (`config.json` for `base/config.json`): two files under
        one name, kept once when read back, so that such a record says nothing true of what the checkpoint held."""
        return not self.checkpoint_files or combined(self.checkpoint_files) == self.checkpoint

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the predictions manifest's `key`)."""
        return {"input": self.input, "checkpoint": self.checkpoint, "mode": self.mode, "options": self.options,
                "photos": [p.to_json() for p in self.photos],
                "checkpoint_files": [f.to_json() for f in self.checkpoint_files], "software": self.software}

    @classmethod
    def from_json(cls, data: Any) -> "ResumeKey":
        """The key a manifest recorded; ValueError when it is not one."""
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("input", "checkpoint", "mode")) \
                or not isinstance(data.get("options"), dict):
            raise ValueError("not a resume key")
        software = data.get("software") or {}
        if not isinstance(software, dict) or not all(isinstance(v, str) for v in software.values()):
            raise ValueError("not a resume key: its software is not a table of versions")
        return cls(data["input"], data["checkpoint"], data["mode"], data["options"],
                   list(by_name(data.get("photos") or []).values()),
                   list(by_name(data.get("checkpoint_files") or []).values()), software)


def photo_digests(photos: Iterable[tuple[str, Path]], known: Mapping[str, FileDigest] | None = None) -> list[FileDigest]:
    """(name, path) of every photo -> its digest (recorded ones trusted while their stat matches)."""
    out = []
    for name, path in photos:
        try:
            # Only a regular file is read: a FIFO named by a dataset line was opened to be hashed and waited on for ever.
            out.append(file_digest(path, name, known) if stat.S_ISREG(os.stat(path).st_mode) else unreadable(name))
        except OSError:
            out.append(unreadable(name))
    return out


def unreadable(name: str) -> FileDigest:
    """The digest recorded for a photo that cannot be read: its line is an error line, redone when that changes."""
    return FileDigest(name, UNREADABLE, 0, 0, 0, 0)


def file_key(path: str | Path | None) -> str | None:
    """The SHA-256 of a file a mode reads (teachers, labels), None when there is none; ValueError naming what it is
    when it is no regular file (a FIFO the run config names was opened to be hashed and waited on for ever)."""
    if path is None:
        return None
    kind = file_kind(Path(path))
    if kind is not None and kind not in NOTHING_THERE:
        raise ValueError(f"{path}: {kind}, not a file to read")
    return file_digest(Path(path), str(path)).sha256


def photos_key(photos: Iterable[tuple[str, Path]]) -> str:
    """One digest over photos a mode shows beside each one predicted (teachers mode's teacher photos), by name and
    content: the teachers JSONL's own digest says nothing of the photos it names, and one replaced under its name
    showed the model another example between a kill and its resume."""
    return combined(photo_digests(photos))


def resume_key(photos: list[tuple[str, Path]], checkpoint: Path, base: str | None, mode: str, options: Mapping[str, Any],
               previous: ResumeKey | None = None) -> ResumeKey:
    """The key of a predict run; `previous` (the output's recorded key) spares hashing files unchanged since."""
    known_photos = by_name(p.to_json() for p in previous.photos) if previous else {}
    known_files = by_name(f.to_json() for f in previous.checkpoint_files) if previous else {}
    digests = photo_digests(photos, known_photos)
    model = identify(checkpoint, base, known_files)
    return ResumeKey(combined(digests), model.digest, mode, _plain(dict(options)), digests, model.files, software())


def _plain(options: dict[str, Any]) -> dict[str, Any]:
    """Options as JSON gives them back (tuples as lists), so a recorded key compares equal to a fresh one."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(options.items())}


def differences(old: ResumeKey, new: ResumeKey) -> list[str]:
    """What differs between two keys, each as a phrase naming the old and the new (empty when equal)."""
    out = []
    if old.mode != new.mode:
        out.append(f"mode '{old.mode}' (now '{new.mode}')")
    for name in sorted(set(old.options) | set(new.options)):
        was, now = old.options.get(name, "<unset>"), new.options.get(name, "<unset>")
        if was != now and name in PHOTO_OPTIONS and "<unset>" not in (was, now):
            out.append(PHOTO_OPTIONS[name])
        elif was != now and name in FILE_OPTIONS:  # two SHA-256 side by side would say nothing a user can act on
            out.append(f"the {name} file's content changed" if all(isinstance(v, str) and v != "<unset>" for v in (was, now))
                       else f"{name} {_file_option(was)} (now {_file_option(now)})")
        elif was != now:
            out.append(f"{name} {was!r} (now {now!r})")
    if old.checkpoint != new.checkpoint and not old.files_add_up():
        out.append(f"the checkpoint's files as recorded do not add up to the model recorded ({UNSOUND_RECORD})")
    elif old.checkpoint != new.checkpoint:
        out.append(f"the checkpoint's content changed ({_changed(old.checkpoint_files, new.checkpoint_files, 'file')})")
    if old.input != new.input:
        out.append(f"the input changed ({_changed(old.photos, new.photos, 'photo')})")
    # Another program may answer a photo otherwise: its lines and the recorded ones would be two runs' (versions.py).
    out += [f"written by another program: {'; '.join(changed)}"] if (
        changed := software_differences(old.software, new.software)) else []
    return out


def _file_option(value: Any) -> str:
    """How a file option's recorded value reads in a difference: a file, none, or not recorded at all."""
    return "unrecorded" if value == "<unset>" else "none" if value is None else "a file"


def _changed(old: list[FileDigest], new: list[FileDigest], what: str) -> str:
    """Which named files were added, removed or differ in content, a few named each."""
    before, after = {d.name: d.sha256 for d in old}, {d.name: d.sha256 for d in new}
    if not before:
        return "no record of what it held"
    parts = []
    for label, names in (("differ", [n for n in after if n in before and before[n] != after[n]]),
                         ("added", [n for n in after if n not in before]),
                         ("removed", [n for n in before if n not in after])):
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            parts.append(f"{len(names)} {what}{'s' if len(names) > 1 else ''} {label}: {shown}")
    if not parts and list(before) != list(after):
        parts.append(f"the same {what}s in another order")
    return "; ".join(parts) or f"{what}s equal"
