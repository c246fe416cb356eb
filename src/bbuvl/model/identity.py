"""A model folder's identity by content: one digest over every file that decides what it predicts.

A path says nothing about what a folder holds (a checkpoint retrained in place keeps its path), so a resume
compares this digest instead. Every file counts except the optimizer's and the trainer's state, which decide
how training goes on, never what the model answers. A LoRA checkpoint's base weights decide its answers too:
its identity covers the base folder as well (`base/` names).

Hashing ~7 GB of a 3B checkpoint on every resume would take tens of seconds, so `bbuvl train` records each
file's digest when it saves (`content_digest.json`) and `identify` trusts a recorded digest while the file's
stat still matches (data/digests.py); a foreign folder is hashed in full, once per output that records it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from bbuvl.atomic import write_bytes_atomic, write_text_atomic
from bbuvl.data.digests import FileDigest, by_name, combined, file_digest
from bbuvl.data.faults import THRESHOLDS_FILE, TILED_THRESHOLDS_FILE
from bbuvl.data.scale import SCALE_FILE, TILE_SCALE_FILE

DIGEST_FILE = "content_digest.json"
# What HF Trainer adds to a numbered checkpoint to resume the loop: no part of what the model answers.
# DeepSpeed adds `latest`, `zero_to_fp32.py` and a `global_stepN/` folder of optimizer shards (folders never count:
# HF saves a model's files flat).
# What `bbuvl eval --choose-thresholds` and `bbuvl choose-tiles` write into a trained checkpoint: chosen for it, not
# part of what its training decided.
CHOSEN_LATER = (THRESHOLDS_FILE, TILED_THRESHOLDS_FILE, TILE_SCALE_FILE)
# Why a file chosen for another model is left out, after its name.
CHOSEN_FOR_ANOTHER = ("was chosen for another model (the checkpoint's training record differs from the one it was "
                      "chosen with: copied from another checkpoint, or trained again since)")
TRAINING_STATE = re.compile(r"^(optimizer\.pt|scheduler\.pt|scaler\.pt|trainer_state\.json|training_args\.bin|"
                            r"rng_state(_\d+)?\.pth|content_digest\.json|latest|zero_to_fp32\.py)$")


@dataclass(frozen=True)
class ModelIdentity:
    """What a model folder holds, by content: one digest, and the per-file digests it was made of."""

    digest: str
    files: list[FileDigest]


def deciding_files(folder: Path) -> list[Path]:
    """The files of a model folder that decide its answers, sorted (hidden files, folders and training state left out)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not TRAINING_STATE.match(p.name)
                  and not p.name.startswith("."))


def recorded_digests(folder: Path) -> dict[str, FileDigest]:
    """The digests `bbuvl train` recorded in a checkpoint when saving it (none for a foreign folder)."""
    try:
        data = json.loads((folder / DIGEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none, or damaged: every file is then hashed, which is slower, never wrong
    return by_name(data.get("files", []) if isinstance(data, dict) else [])


def changed_since_saved(folder: Path, now: Mapping[str, FileDigest] | None = None) -> tuple[list[str], list[str]]:
    """The files `bbuvl train` recorded when it saved checkpoint `folder` (`content_digest.json`, the files chosen later
    aside) that changed since, and those gone; none for a folder that recorded none (an export, a base model). `now`:
    digests taken since (a predict's key), compared without hashing again; any other file is hashed only when its
    stat differs from the record's (a copy: seconds for a 3B model's weights)."""
    changed, gone = [], []
    for name, saved in recorded_digests(folder).items():
        if name in CHOSEN_LATER:
            continue
        try:
            digest = (now or {}).get(name) or file_digest(folder / name, name, {name: saved})
        except OSError:
            gone.append(name)
            continue
        if digest.sha256 != saved.sha256:
            changed.append(name)
    return changed, gone


def saved_files_note(folder: Path, now: Mapping[str, FileDigest] | None = None) -> str | None:
    """What `bbuvl predict` and `bbuvl serve` warn of before answering with checkpoint `folder`: the files training
    recorded (`changed_since_saved`) that changed or are gone since, in words; None when none did."""
    changed, gone = changed_since_saved(folder, now)
    said = ([f"{', '.join(changed)} changed since training saved the checkpoint"] if changed else []) + (
        [f"{', '.join(gone)} gone since training saved {'them' if len(gone) > 1 else 'it'} in the checkpoint"]
        if gone else [])
    if not said:
        return None
    return (f"{folder}: {'; '.join(said)} ({DIGEST_FILE} records each file's SHA-256): copy it again, unless the "
            "change is an edit of your own")


def record_digests(folder: str | Path) -> None:
    """Hash every deciding file of a checkpoint just saved and record the digests in it (`content_digest.json`)."""
    folder = Path(folder)
    known = recorded_digests(folder)
    files = [file_digest(p, p.relative_to(folder).as_posix(), known) for p in deciding_files(folder)]
    write_text_atomic(folder / DIGEST_FILE, json.dumps({"files": [f.to_json() for f in files]}, indent=1) + "\n")


def trained_identity(folder: str | Path, known: Mapping[str, FileDigest] | None = None) -> str | None:
    """One digest over the files training recorded in a checkpoint (`content_digest.json`), the files chosen for it
    later (`CHOSEN_LATER`) aside: what a file chosen for this model records, so that one copied from another model,
    or kept while the model was trained again in place, is known. None for a folder that recorded nothing.

    Each recorded file counts by its content now: the record vouches for a file while its stat matches, and one
    that changed since (another run's weights copied over it) is hashed, so that the thresholds chosen for the
    weights it replaced are known as chosen for another model. A folder as saved hashes nothing; a copy of one
    (new inodes) is hashed whole, each time: seconds for a 3B model, which is why the predictor asks only when a
    chosen file is there to check. `known`: digests taken since (`identify`'s, named alike), trusted over the record
    while their stat matches, so that a copy is hashed once per start, not once for each."""
    folder = Path(folder)
    recorded = {name: d for name, d in sorted(recorded_digests(folder).items()) if name not in CHOSEN_LATER}
    files = []
    for name, d in recorded.items():
        try:
            files.append(file_digest(folder / name, name, {name: (known or {}).get(name, d)}))
        except OSError:
            files.append(FileDigest(name, "", 0, 0, 0, 0))  # gone: the model cannot be what the record describes
    return combined(files) if files else None


def chosen_for_another(recorded: str | None, now: str | None) -> bool:
    """Whether a file chosen for the model whose `trained_identity` was `recorded` sits in a checkpoint whose identity
    is `now` and differs (either None: not known, so not another)."""
    return recorded is not None and now is not None and recorded != now


def taken_choices(folder: str | Path) -> dict[str, bytes]:
    """The bytes of a checkpoint's training scale and of each file chosen for it later (`CHOSEN_LATER`) there now, by
    name: read once, before its weights load, and what a command that carries them into another folder (`model
    export`, `model merge-lora`) decides on, says and writes. `choose-tiles` and `eval --choose-thresholds` write their
    choices beside a model being read (bbuvl/outputs.py `CHOICE_FILES`), and a copy made once the weights were saved,
    minutes later, carried a choice made meanwhile, a scale of one choice beside tiled thresholds of another, under a
    record of the files judged at the start."""
    taken = {}
    for name in (SCALE_FILE, *CHOSEN_LATER):
        try:
            taken[name] = (Path(folder) / name).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
    return taken


def write_taken(taken: Mapping[str, bytes], folder: str | Path, names: Iterable[str] | None = None) -> None:
    """Write into `folder` the files of `taken` (`taken_choices`) as read, those of `names` only when given."""
    for name, raw in taken.items():
        if names is None or name in names:
            write_bytes_atomic(Path(folder) / name, raw)


def restamp_chosen(source: str | Path, folder: str | Path) -> None:
    """In `folder`, a checkpoint saved anew from `source` (a LoRA merge: the same model as other files), record its
    own `trained_identity` in the files chosen for `source`'s (`CHOSEN_LATER`: infer/verdict.py's `ChosenThresholds`,
    infer/tile_scale.py's `ChosenTileScale`); one chosen for yet another model keeps saying so."""
    was, now = trained_identity(source), trained_identity(folder)
    for name in CHOSEN_LATER:
        path = Path(folder) / name
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, ValueError):
            continue  # damaged: loading it says so, naming the file
        if isinstance(data, dict) and was is not None and data.get("model") == was:
            data["model"] = now
            write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def identify(folder: str | Path, base: str | Path | None = None,
             known: Mapping[str, FileDigest] | None = None) -> ModelIdentity:
    """The identity of a model folder (and of its LoRA base folder `base`), hashing only files no record vouches for.

    `known`: digests recorded earlier (by a predictions manifest), named as `files` names them. A `base` that is
    not a local folder (a hub id) counts by its name.
    """
    folder = Path(folder)
    files = _digests(folder, "", recorded_digests(folder) | dict(known or {}))
    if base is not None:
        if Path(base).is_dir():
            base_known = {f"base/{k}": v for k, v in recorded_digests(Path(base)).items()}
            files += _digests(Path(base), "base/", base_known | {k: v for k, v in (known or {}).items()
                                                                if k.startswith("base/")})
        else:
            files.append(FileDigest(f"base:{base}", "", 0, 0, 0, 0))
    return ModelIdentity(combined(files), files)


def _digests(folder: Path, prefix: str, known: Mapping[str, FileDigest]) -> list[FileDigest]:
    out = []
    for path in deciding_files(folder):
        name = prefix + path.relative_to(folder).as_posix()
        out.append(file_digest(path, name, {name: known[name]} if name in known else None))
    return out
