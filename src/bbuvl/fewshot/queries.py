"""Query images: a folder tree, crops of a JSONL dataset's boxes, or crops of a predictions file's detections.

- folder: `query/<class>/*.jpg` (the folder path is the ground truth; images at the root have none);
- dataset JSONL (`bbuvl data` format): one crop per object, its `desc` (optionally cut to a hierarchy
  level) the ground truth;
- predictions JSONL (`bbuvl predict`): one crop per detected box, no ground truth; lines with an `error`
  are reported and skipped;
- a single image file.

Everything is yielded lazily, so a predictions file of any length streams. Problems (bad lines, boxes
that are not 4 numbers) go to the caller's `problems` list, named by `file:line`.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from bbuvl.data.images import IMAGE_SUFFIXES, list_images, skipped_note, suffix_counts
from bbuvl.data.jsonfile import json_kind
from bbuvl.data.labels import SEP, label_at_level
from bbuvl.data.schema import iter_dataset, resolve_image
from bbuvl.data.text import name_as_text, not_text
from bbuvl.fewshot.embed import ImageItem
from bbuvl.fewshot.support import refuse_linked_folder
from bbuvl.infer.output import Manifest, manifest_path, prediction_root, read_manifest
from bbuvl.infer.resume_key import photo_changed


FEWSHOT_BEST = "fewshot_best"  # the `extra` key `fewshot label` writes its best class under (label.py)


@dataclass
class PredictionLine:
    """One line of a predictions file: the photo, its size, and its detections."""

    line: int
    image: Path
    width: int | None
    height: int | None
    objects: list[dict[str, Any]] = field(default_factory=list)  # each with a valid `bbox_2d`; `label`, `score`

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) the photo was predicted at, its boxes' frame; None when the line does not say."""
        return (self.width, self.height) if self.width is not None and self.height is not None else None


def _first_line(path: str | Path) -> str | None:
    """The first line of a text file that is not blank; None when it has none."""
    with open(path, encoding="utf-8") as fh:
        return next((text for text in fh if text.strip()), None)


def _no_lines(path: Path) -> ValueError:
    """The error for a query or predictions file with nothing in it (a predict that has not run yet, a wrong file)."""
    return ValueError(f"{path}: holds no lines: nothing to classify (expected a dataset or `bbuvl predict` JSONL)")


def none_answered(path: str | Path, verb: str, why: list[str]) -> ValueError:
    """The error for queries of which none could be used: the photos that could not be read are the usual reason,
    so the first of them is named."""
    return ValueError(f"{path}: no query could be {verb}" + (f" ({len(why)} problem(s), the first: {why[0]})" if why else ""))


def answered(rows: Iterator[dict], path: str | Path, *why: list[str]) -> Iterator[dict]:
    """`rows` as they come; ValueError at their end when there were none and queries were skipped (the lists `why`,
    filled while the rows run): a file of no answers would pass for a result."""
    n = 0
    for n, row in enumerate(rows, start=1):
        yield row
    skipped = [message for messages in why for message in messages]
    if n == 0 and skipped:
        raise none_answered(path, "classified", skipped)


def is_predictions_file(path: str | Path) -> bool:
    """True when the first JSON line of a JSONL file looks like `bbuvl predict` output (`image`, not `images`)."""
    text = _first_line(path)
    try:
        obj = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        return False
    return isinstance(obj, dict) and "image" in obj and "images" not in obj


def _valid_box(box: Any) -> bool:
    return (
        isinstance(box, list) and len(box) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
        and box[0] <= box[2] and box[1] <= box[3]
    )


def detector_score(detection: dict[str, Any]) -> float:
    """A detection's score, 1.0 when it has none (absent or null alike, as `_valid_score` takes both): a null was 0, so
    `--min-score` skipped it where a detection with no score key was taken."""
    score = detection.get("score")
    return 1.0 if score is None else float(score)


def _valid_score(score: Any) -> bool:
    """A detection's score as predict writes it: absent (None) or a finite number."""
    return score is None or (isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score))


def _valid_objects(objects: Any, where: str, problems: list[str]) -> list[dict[str, Any]]:
    """The detections of one predictions line that hold a box and a score; the rest go to `problems`, named by line."""
    if objects is None:
        return []
    if not isinstance(objects, list):
        problems.append(f"{where}: 'objects' must be an array of detections, got {json_kind(objects)}")
        return []
    valid = []
    for i, o in enumerate(objects):
        if not (isinstance(o, dict) and _valid_box(o.get("bbox_2d"))):
            problems.append(f"{where}: objects[{i}]: expected a bbox_2d of 4 finite numbers [x1, y1, x2, y2]")
        elif not _valid_score(o.get("score")):
            # float('high') stopped the whole run naming no line, a list was a traceback, NaN passed no --min-score.
            problems.append(f"{where}: objects[{i}]: score {json.dumps(o['score'])} is not a finite number")
        else:
            valid.append(o)
    return valid


def iter_predictions(path: str | Path, problems: list[str]) -> Iterator[PredictionLine]:
    """The lines of a predictions file that name an image; failed or malformed lines go to `problems`."""
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8-sig")
    except OSError as e:
        raise ValueError(f"{path}: cannot open predictions file: {e.strerror or e}") from None
    root = prediction_root(path)  # names are relative to predict's input (infer/output.py)
    manifest = read_manifest(path)
    gone = _moved_input(path, manifest)
    recorded = {d.name: d for d in manifest.key.photos} if manifest is not None and manifest.key is not None else {}
    blank = True
    with fh:
        for no, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            blank = False
            where = f"{path}:{no}"
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                problems.append(f"{where}: invalid JSON: {e.msg} at column {e.colno}")
                continue
            if isinstance(obj, dict) and "images" in obj and "image" not in obj:
                problems.append(f"{where}: a dataset record ('images', 'objects' with 'desc'), not a prediction line: "
                                "give what `bbuvl predict` wrote")
                continue
            if isinstance(obj, dict) and {"query", "best_class"} <= obj.keys():
                # Read as detections, its lines held none: an empty result written with exit 0, or 'no query'.
                raise ValueError(f"{where}: a line of `fewshot classify`'s results (one answer per query), not of "
                                 "`bbuvl predict`: give the dataset, predictions file or folder it answered")
            if not isinstance(obj, dict) or not isinstance(obj.get("image"), str):
                problems.append(f"{where}: expected an object with an 'image' path")
                continue
            if obj.get("error"):
                problems.append(f"{where}: prediction failed for {obj['image']}: {obj['error']}")
                continue
            if gone is not None and not Path(obj["image"]).is_absolute():
                raise gone
            if photo_changed(root / obj["image"], obj["image"], recorded.get(obj["image"])):
                # Its boxes were cropped from the photo now under that name (a folder synced again, a photo
                # re-exported), and `fewshot label` wrote them onto it.
                problems.append(f"{where}: {root / obj['image']} changed since it was predicted (its SHA-256 in "
                                f"{manifest_path(path).name}): these boxes are of the photo it replaced; predict again into it "
                                "with --overwrite")
                continue
            objects = _valid_objects(obj.get("objects"), where, problems)
            w, h = obj.get("width"), obj.get("height")
            yield PredictionLine(no, root / obj["image"], w if isinstance(w, int) else None,
                                 h if isinstance(h, int) else None, objects)
    if blank:  # an empty dataset written by `fewshot label` would pass for a result
        raise _no_lines(path)


def _moved_input(path: Path, manifest: Manifest | None) -> ValueError | None:
    """The error for a predictions file whose photo names are relative to a predict input that is no longer where its
    manifest says (the photos and the file moved or copied together): every photo was 'not found', named under a
    folder that never held it."""
    if manifest is None or os.path.lexists(manifest.input):
        return None
    return ValueError(f"{path}: its photo names are relative to the input predict read, {manifest.input} (recorded in "
                      f"{manifest_path(path).name}), which is no longer there: put the photos back there, or write "
                      "their new place as the manifest's 'input'")


def _folder_items(root: Path, images: list[Path], problems: list[str]) -> Iterator[ImageItem]:
    for path in images:
        # A name that is no UTF-8 text (a folder unpacked from a Chinese Windows archive) could be written to no
        # results file: every answer before it was lost with a codec error.
        if (problem := not_text(str(path.relative_to(root)))) is not None:
            problems.append(f"{name_as_text(str(path))}: skipped: {problem}")
            continue
        label = SEP.join(path.relative_to(root).parts[:-1])
        yield ImageItem(path, label=label or None)


def _dataset_items(path: Path, margin: float, level: int | None, problems: list[str]) -> Iterator[ImageItem]:
    for row in iter_dataset(path):
        if row.error is not None:
            problems.append(str(row.error))
            continue
        record = row.sample.student
        image = resolve_image(path, record.image)
        for i, o in enumerate(record.objects):
            yield ImageItem(image, tuple(o.bbox_2d), margin, label_at_level(o.desc, level), f"{path}:{row.line} objects[{i}]",
                            record.size)


def _prediction_items(path: Path, margin: float, min_score: float, problems: list[str]) -> Iterator[ImageItem]:
    known, lines, boxes, kept = len(problems), 0, 0, 0
    for pred in iter_predictions(path, problems):
        lines, boxes = lines + 1, boxes + len(pred.objects)
        for i, o in enumerate(pred.objects):
            if detector_score(o) >= min_score:
                kept += 1
                yield ImageItem(pred.image, tuple(o["bbox_2d"]), margin, None, f"{path}:{pred.line} objects[{i}]",
                                pred.size)
    if not kept and len(problems) == known:  # a results file of no row read as a result, exit 0
        why = (f"none of its {lines} photo(s) has a detection" if not boxes else
               f"all {boxes} of its detections score below --min-score {min_score:g}")
        raise ValueError(f"{path}: {why}: nothing to classify")


def iter_queries(
    path: str | Path, problems: list[str], margin: float = 0.0, level: int | None = None, min_score: float = 0.0
) -> Iterator[ImageItem]:
    """Query items from a folder, a dataset or predictions JSONL, or one image; problems go to `problems`.

    `margin` grows crops by that fraction of the box on each side; `level` cuts dataset labels to their
    first `level` parts; detections scoring below `min_score` are left out.
    """
    path = Path(path)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if level is not None and (path.is_dir() or path.suffix.lower() != ".jsonl" or _is_predictions(path)):
        raise ValueError(f"--level {level} cuts the labels of a dataset JSONL; {path} is not one (a folder's labels are "
                         "its subfolder names, a predictions file's and a photo's are not the truth): give the "
                         "queries as a dataset, or leave --level out")
    if path.is_dir():
        for folder in path.rglob("*"):
            if folder.is_dir():
                refuse_linked_folder(folder)
        skipped: Counter[str] = Counter()
        images = list_images(path, skipped)
        if not images:  # before any output is written: zero queries answered is not a result
            holds = f"; it holds {suffix_counts(skipped)}" if skipped else ""
            raise ValueError(f"{path}: no query images in this folder (searched recursively{holds})")
        if note := skipped_note(path, skipped):
            problems.append(note)
        return _folder_items(path, images, problems)
    if not path.is_file():
        raise ValueError(f"{path}: query path not found (a folder, a .jsonl dataset or predictions file, or an image)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return iter([ImageItem(path)])
    if path.suffix.lower() != ".jsonl":
        raise ValueError(f"{path}: queries must be a folder, a .jsonl file or an image, not '{path.suffix}'")
    try:
        empty = _first_line(path) is None
        predictions = is_predictions_file(path)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read: {e}") from None
    if empty:  # as for an empty folder: zero queries answered is not a result
        raise _no_lines(path)
    if predictions:
        return _prediction_items(path, margin, min_score, problems)
    if level is not None:
        _check_level(path, level)
    return _dataset_items(path, margin, level, problems)


def self_labelled(path: str | Path) -> tuple[int, str | None]:
    """The objects of a dataset JSONL whose label is the one `fewshot label` gave them (its `extra`, unchanged since),
    and where the first is; (0, None) for any other query path."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() != ".jsonl" or _is_predictions(path):
        return 0, None
    n, first = 0, None
    for row in iter_dataset(path):
        for i, o in enumerate(row.sample.student.objects if row.sample is not None else []):
            if o.extra and o.extra.get(FEWSHOT_BEST) == o.desc and "fewshot" not in o.extra:
                n, first = n + 1, first or f"{path}:{row.line} objects[{i}]"
    return n, first


def _is_predictions(path: Path) -> bool:
    try:
        return path.is_file() and is_predictions_file(path)
    except (OSError, UnicodeDecodeError):
        return False  # named when the queries are read


def _check_level(path: Path, level: int) -> None:
    """ValueError when `level` is deeper than every label of the dataset: it would silently mean the full label."""
    depth = max((o.desc.count(SEP) + 1 for row in iter_dataset(path) if row.sample is not None
                 for o in row.sample.student.objects), default=1)
    if not 1 <= level <= depth:
        raise ValueError(f"--level {level}: the labels of {path} have {depth} level{'s' if depth > 1 else ''}; give 1 "
                         f"to {depth}, or leave --level out for the full label")

