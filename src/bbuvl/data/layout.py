"""The dataset folder: train/val/teachers JSONL, label vocabulary and summary, written together."""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache, partial
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from bbuvl.atomic import temporary_of, write_text_atomic
from bbuvl.data.jsonfile import dumps_json, json_kind, read_json
from bbuvl.data.labels import SEP, Hierarchy, label_at_level
from bbuvl.data.named_photos import photo_names
from bbuvl.data.schema import DatasetError, ImageRecord, another_kind, iter_json_lines, read_records, write_dataset
from bbuvl.data.teachers import select_teachers
from bbuvl.data.text import clean_label, label_key, label_problem, spelling_of
from bbuvl.outputs import writer_at

TRAIN, VAL, TEACHERS, LABELS, SUMMARY, ERRORS = (
    "train.jsonl", "val.jsonl", "teachers.jsonl", "labels.json", "summary.json", "errors.jsonl",
)
DATASET_FILES = (TRAIN, VAL, TEACHERS, LABELS, SUMMARY)  # what write_dataset_folder writes
IMAGES = "images"  # the folder of photos that convert, import-coco and tile write beside those files


def named_by_dataset(folder: Path) -> Callable[[str], bool]:
    """Which names under `folder/images` the dataset there names (its train, val and teachers JSONL), or a killed
    writer's temporary of one: what `data convert` and `data import-coco` write there, under the photos' own names.
    The dataset is read at the first question, once the command holds it."""
    named = cache(partial(_photos_named, folder))
    return lambda name: name in named() or temporary_of(name) in named()


def _photos_named(folder: Path) -> set[str]:
    """The photos under `folder/images` its train, val and teachers JSONL name, relative to images/."""
    named = set()
    for dataset in (TRAIN, VAL, TEACHERS):
        if not (folder / dataset).is_file():
            continue
        try:
            named |= {n.removeprefix("images/") for _, line in iter_json_lines(folder / dataset)
                      for n in photo_names(line) if n.startswith("images/")}
        except DatasetError:  # unreadable: what it named is not known to be the command's, and stays
            continue
    return named


def unfinished_hint(path: Path) -> str:
    """'; `bbuvl COMMAND` (pid N) was writing it and ended before it finished ...' when a killed writer's lock names
    `path`, else ''."""
    if (writer := writer_at(path)) is None or writer.running:
        return ""
    # A kill leaves the earlier version set aside (outputs.replacing) and nothing under the name: 'missing' alone
    # read as a file never written, where the command that writes it only has to run again.
    return (f"; `bbuvl {writer.command}` ({writer.who}) was writing it and ended before it finished (killed?): "
            "run that command again")


# The other names other tools give a dataset folder's files: a `valid.jsonl` beside train.jsonl was read by no
# command, and `data stats` and `data check` of the folder said nothing of its photos.
_OTHER_STEMS = {TRAIN: ("training",), VAL: ("valid", "validation", "dev"), TEACHERS: ("teacher",)}


def near_file(folder: Path, name: str) -> str | None:
    """The name of a file in `folder` that is a dataset folder's `name` under another case, suffix or tool's name
    (`Train.jsonl`, `train.json`, `valid.jsonl`); None when there is none."""
    stems = {Path(name).stem.casefold(), *_OTHER_STEMS.get(name, ())}
    try:
        return next((p.name for p in sorted(folder.iterdir()) if p.name != name and not p.name.startswith(".")
                     and Path(p.name.casefold()).stem in stems
                     and Path(p.name).suffix.casefold() in (".jsonl", ".json", ".txt", "") and p.is_file()), None)
    except OSError:
        return None


def missing_file_hint(folder: Path, name: str) -> str:
    """What a dataset folder that lacks `name` holds instead, as advice beginning "; " ('' when nothing near): the
    command that was writing it when it was killed, a file of another case or suffix (`Train.jsonl`, `train.json`), or the platform's export that `bbuvl data convert` reads.
    Said without it, "no train.jsonl" left the user to guess which of the files there was meant."""
    if killed := unfinished_hint(folder / name):
        return killed
    try:
        there = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return ""
    if (near := near_file(folder, name)) is not None:
        return f"; {near} is there: a dataset folder's file is JSON Lines (one photo per line) named {name}"
    if name == TRAIN and (folder / VAL).is_file():
        return (f"; {VAL} is there alone, a folder of validation photos (as `data synth --n-train 0` writes): "
                f"give {folder / VAL} itself")
    jsons = [p for p in there if p.suffix.lower() == ".json" and p.name not in (LABELS, SUMMARY)]
    jsons += sorted((folder / "annotations").glob("*.json"))[:1] if (folder / "annotations").is_dir() else []
    for p in jsons[:1]:
        if (kind := another_kind(p)) is not None:
            return f"; {p.relative_to(folder)} is {kind[0]}: {kind[1].replace(' SRC ', f' {folder} ')}"
    return ""


def label_counts(records: list[ImageRecord]) -> dict[str, Any]:
    """Vocabulary with counts: full labels (one entry per label however typed) and every hierarchy level."""
    spell = spelling_of(o.desc for r in records for o in r.objects)
    full = Counter(spell(o.desc) for r in records for o in r.objects)
    levels: dict[str, Counter[str]] = {}
    for label, n in full.items():
        for lv in range(1, label_key(label).count(SEP) + 2):  # cut as `eval --level` cuts: `a / b` is of category `a`
            levels.setdefault(str(lv), Counter())[label_at_level(label, lv)] += n
    return {
        "labels": dict(sorted(full.items(), key=lambda kv: (-kv[1], kv[0]))),
        "levels": {lv: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for lv, c in sorted(levels.items())},
    }


def write_json(path: Path, data: Any) -> None:
    """Pretty UTF-8 JSON (Chinese kept readable; `dumps_json`)."""
    write_text_atomic(path, dumps_json(data, indent=2) + "\n")


def write_dataset_folder(
    out: str | Path,
    train: list[ImageRecord],
    val: list[ImageRecord],
    num_teachers: int = 10,
    seed: int = 42,
    summary: dict[str, Any] | None = None,
    val_only: bool = False,
    copies: Sequence[Sequence[int]] = (),
) -> dict[str, Any]:
    """Write train/val/teachers JSONL, labels.json and summary.json; returns the summary.

    Teachers are a coverage-greedy subset of the training photos (never validation ones), at most one of each group
    of indices into `train` in `copies` (near-copies of one photo); the collator never shows a photo as its own
    teacher. `val_only` (no training photos asked for) writes no train or
    teachers file: an empty train.jsonl is a dataset `data check` refuses, where the folder is only validation photos.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if val_only and train:
        raise ValueError(f"{out}: a folder of validation photos only was asked for, with {len(train)} training photos")
    train = [r.sorted() for r in train]
    val = [r.sorted() for r in val]
    teachers = [train[i] for i in select_teachers(train, num_teachers, seed, copies)]
    if not val_only:
        write_dataset(out / TRAIN, train)
    write_dataset(out / VAL, val)
    if not val_only:
        write_dataset(out / TEACHERS, teachers)
    write_json(out / LABELS, label_counts(train + val))
    result = {
        "images": {"train": len(train), "val": len(val), "teachers": len(teachers)},
        "objects": {"train": sum(len(r.objects) for r in train), "val": sum(len(r.objects) for r in val)},
        "labels": len({o.desc for r in train + val for o in r.objects}),
        **(summary or {}),
    }
    write_json(out / SUMMARY, result)
    return result


def data_labels(datasets: Iterable[str | Path | None], hierarchy: Hierarchy) -> list[str]:
    """The label vocabulary of the datasets that exist among `datasets` (training and validation), in hierarchy order."""
    seen: set[str] = set()
    for path in filter(None, datasets):
        if Path(path).exists():
            seen |= {o.desc for r in read_records(path) for o in r.objects}
    return ordered_labels(seen, hierarchy)


def ordered_labels(seen: Iterable[str], hierarchy: Hierarchy) -> list[str]:
    """The labels `seen` as one vocabulary (one entry per label however typed), in hierarchy order."""
    seen = set(seen)
    spell = spelling_of(sorted(seen))  # one entry per label however typed (data/text.py)
    order = {label: i for i, label in enumerate(hierarchy.labels())}
    labels = {spell(label) for label in seen}
    return sorted(labels, key=lambda label: (order.get(hierarchy.canonical(label) or label, len(order)), label))


def recorded_prompt(path: str | Path) -> str | None:
    """The system prompt a labels file records verbatim (`"system"`, which `bbuvl model export` writes: the one its
    checkpoint trained with), or None when it records none."""
    data = read_json(path, "labels file")
    system = data.get("system") if isinstance(data, dict) else None
    if system is not None and (not isinstance(system, str) or not system.strip()):
        raise ValueError(f"{path}: 'system' must be the system prompt the model was trained with (text), got "
                         f"{json_kind(system)}")
    return system


def read_vocabulary(path: str | Path) -> list[str]:
    """Label vocabulary from a dataset's labels.json (`{"labels": {label: count}}`) or a JSON list of labels."""
    data = read_json(path, "labels file")
    labels = data.get("labels") if isinstance(data, dict) else data
    if isinstance(labels, dict):
        labels = list(labels)
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and clean_label(x) for x in labels):
        raise ValueError(f"{path}: expected a dataset's labels.json or a non-empty JSON list of label strings")
    if problem := next((p for x in labels if (p := label_problem(x)) is not None), None):
        raise ValueError(f"{path}: {problem}")
    first: dict[str, str] = {}  # one spelling per label (data/text.py): the first
    for x in labels:
        first.setdefault(label_key(x), clean_label(x))
    return list(first.values())
