"""Prediction files (what `bbuvl predict` writes) and pairing their lines with ground-truth photos.

One line per image:
    {"image": path, "width": W, "height": H,
     "objects": [{"bbox_2d": [x1, y1, x2, y2], "label": str, "score": float}], "raw": str | null, "error": str | null}
Boxes are in the pixels of the image file the prediction ran on.

`image` names the photo as the predict input did: relative to the input folder, or as the input JSONL
writes it (relative to that file's folder, or absolute). The manifest beside the file (infer/output.py)
says which input that was; `align_predictions` pairs lines with ground truth by the photo's path.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bbuvl.data.check import ImageInfo, check_size, probe_image
from bbuvl.data.digests import FileDigest, file_digest
from bbuvl.data.jsonfile import is_json_number, json_kind
from bbuvl.data.schema import DatasetError, ImageRecord, iter_json_lines, resolve_image
from bbuvl.data.text import file_name_key, not_text, show_text
from bbuvl.eval.collector import collector_paused
from bbuvl.infer.output import Manifest, prediction_root, read_manifest
from bbuvl.infer.parse import parse_detections
from bbuvl.infer.resume_key import UNREADABLE
from bbuvl.paths import real_path


@dataclass
class PredictionLine:
    """One image's predictions. objects: `{"bbox_2d": [4 floats], "label": str, "score": float}`."""

    line: int
    image: str
    width: int | None
    height: int | None
    objects: list[dict[str, Any]]
    raw: str | None = None
    error: str | None = None
    parse_ok: bool | None = None  # the predictor's own flag, when it wrote one
    cut: bool = False  # generate modes: the answer reached the token budget with more to write (objects may be missing)
    tiled: bool = False  # predicted through tiles or zoom (judged by the tiled photos' verdict thresholds)

    @cached_property
    def failed(self) -> bool:
        """True when this image produced no usable answer: an error, or generated text nothing could be read from."""
        if self.error:
            return True
        if self.parse_ok is not None:
            return not self.parse_ok
        return self.raw is not None and not parse_detections(self.raw).ok


def read_predictions(path: str | Path) -> list[PredictionLine]:
    """Read a prediction JSONL; a malformed line raises DatasetError naming file:line."""
    with collector_paused():
        return [_prediction_line(data, Path(path), no) for no, data in iter_json_lines(path, "predictions")]


def _prediction_line(data: Any, path: Path, no: int) -> PredictionLine:
    if isinstance(data, DatasetError):
        hint = " (a prediction run killed mid-line? re-run `bbuvl predict` with the same --out to finish it)"
        raise DatasetError(path, no, data.message + hint)
    if isinstance(data, dict) and "images" in data and "image" not in data:
        raise DatasetError(path, no, "a dataset record ('images', 'objects' with 'desc'), not a prediction line: "
                                     "--pred takes what `bbuvl predict` wrote (were --pred and --gt swapped?)")
    if not isinstance(data, dict) or not isinstance(data.get("image"), str):
        raise DatasetError(path, no, "expected an object with an 'image' path (a `bbuvl predict` output line)")
    if not data["image"].strip():  # it named the dataset's folder, paired with nothing, and was left out with a note
        raise DatasetError(path, no, f"image: {data['image']!r} names no photo")
    # A JSON escape of half a character ("\udcff") reads as text no writer can write: METRICS.json and the report
    # failed after all the scoring on a codec error that named no file.
    if (problem := not_text(data["image"])) is not None:
        raise DatasetError(path, no, f"image: {problem}")
    for key in ("raw", "error"):
        if isinstance(data.get(key), str) and not_text(data[key]) is not None:
            raise DatasetError(path, no, half_characters(key, data[key]))
    listed = data.get("objects") or []
    if type(listed) is not list:  # a string or an object would be read key by key, each an error of its own
        raise DatasetError(path, no, f"objects: expected an array of objects, got {json_kind(listed)}")
    objects = [_prediction_object(o, path, no, i) for i, o in enumerate(listed)]
    size = (data.get("width"), data.get("height"))
    valid_size = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    parse_ok = data.get("parse_ok")
    return PredictionLine(
        line=no, image=data["image"],
        width=size[0] if valid_size else None, height=size[1] if valid_size else None,
        objects=objects, raw=data.get("raw") if isinstance(data.get("raw"), str) else None,
        error=str(data["error"]) if data.get("error") else None,
        parse_ok=parse_ok if isinstance(parse_ok, bool) else None, cut=data.get("cut") is True,
        tiled=data.get("tiled") is True,
    )


def half_characters(where: str, text: str) -> str:
    """The error for a field holding lone surrogates, which only a JSON `\\udcff` escape puts in text read as UTF-8."""
    shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return (f"{where}: {show_text(shown)} is not UTF-8 text: it holds a JSON \\u escape of half a "
            "character (\\ud800-\\udfff), which no file can be written with; write the characters it stands for")


def _prediction_object(o: Any, path: Path, no: int, i: int) -> dict[str, Any]:
    return _well_formed(o) or _checked_object(o, path, no, i)


_NUMBER = (int, float)  # exact types: JSON gives no subclasses but bool, which is not a number here


def _well_formed(o: Any) -> dict[str, Any] | None:
    """The object as `_checked_object` returns it when it is well formed (every line of a sound file), checked
    inline; None sends anything else to `_checked_object` for its error. Reading 100,000 boxes is then a tenth of
    a second, not seconds."""
    if type(o) is not dict or "label" not in o:
        return None
    box, label, score = o.get("bbox_2d"), o["label"], o.get("score", 1.0)
    if type(box) is not list or len(box) != 4 or type(label) is not str or type(score) not in _NUMBER:
        return None
    x1, y1, x2, y2 = box
    if not (type(x1) in _NUMBER and type(y1) in _NUMBER and type(x2) in _NUMBER and type(y2) in _NUMBER):
        return None
    if not (math.isfinite(x1) and math.isfinite(y1) and math.isfinite(x2) and math.isfinite(y2)
            and 0 <= score <= 1 and x2 >= x1 and y2 >= y1 and label.strip() and not_text(label) is None):
        return None
    return {"bbox_2d": [float(x1), float(y1), float(x2), float(y2)], "label": label, "score": float(score)}


def _checked_object(o: Any, path: Path, no: int, i: int) -> dict[str, Any]:
    where = f"objects[{i}]"
    if not isinstance(o, dict):
        raise DatasetError(path, no, f"{where}: expected an object, got {json_kind(o)}")
    box = o.get("bbox_2d")
    if not (isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box)):
        raise DatasetError(path, no, f"{where}.bbox_2d: expected 4 numbers [x1, y1, x2, y2], got {box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 < x1 or y2 < y1:
        raise DatasetError(path, no, f"{where}.bbox_2d: {box} has x2 < x1 or y2 < y1")
    key = "label" if "label" in o else "desc" if "desc" in o else None
    if key is None:
        raise DatasetError(path, no, f"{where}: missing 'label'")
    label = o[key]
    if not isinstance(label, str):
        raise DatasetError(path, no, f"{where}.{key}: expected a string, got {label!r}")
    if not label.strip():
        raise DatasetError(path, no, f"{where}.{key}: empty label {label!r}: a box must name what it shows")
    if not_text(label) is not None:
        raise DatasetError(path, no, half_characters(f"{where}.{key}", label))
    score = o.get("score", 1.0)
    if not _finite(score):
        raise DatasetError(path, no, f"{where}.score: expected a number, got {score!r}")
    if not 0 <= score <= 1:
        # A score past 1 would fail its photo at every threshold a verdict can have, a negative one pass it at all.
        raise DatasetError(path, no, f"{where}.score: {score!r} is outside [0, 1]; a score is the model's confidence "
                                     "(`bbuvl predict` writes it in [0, 1]): rescale the scores")
    return {"bbox_2d": [x1, y1, x2, y2], "label": label, "score": float(score)}


def _finite(v: Any) -> bool:
    return is_json_number(v) and math.isfinite(v)


@dataclass
class Alignment:
    """Prediction lines paired with ground-truth records.

    predictions[i] is the line for records[i], None when no line names that photo.
    """

    predictions: list[PredictionLine | None]
    unmatched: list[PredictionLine] = field(default_factory=list)  # lines naming no ground-truth photo
    repeated: list[PredictionLine] = field(default_factory=list)  # earlier lines of a photo a later line paired with
    gt_repeats: list[tuple[int, int, str]] = field(default_factory=list)  # (first record, repeat, image): one photo twice

    def notes(self) -> list[str]:
        """Sentences for the user about anything that did not pair cleanly."""
        out = []
        if self.gt_repeats:
            ex = ", ".join(f"{image} (records {a + 1} and {b + 1})" for a, b, image in self.gt_repeats[:3])
            out.append(f"the ground truth lists {len(self.gt_repeats)} photo(s) more than once ({ex}): a prediction pairs "
                       "with the first only, so every object of each repeat counts as missed; remove the repeats "
                       "(`bbuvl data check` lists them)")
        missing = sum(p is None for p in self.predictions)
        if missing:
            out.append(f"{missing} ground-truth photo(s) have no prediction line: every object in them counts as missed")
        if self.unmatched:
            ex = ", ".join(f"line {p.line}: {p.image}" for p in self.unmatched[:3])
            out.append(f"{len(self.unmatched)} prediction line(s) name photos that are not in the ground truth "
                       f"and were left out ({ex})")
        if self.repeated:
            ex = ", ".join(f"{p.image} (line {p.line})" for p in self.repeated[:3])
            out.append(f"{len(self.repeated)} prediction line(s) name a photo a later line names again ({ex}): the last "
                       "line of each photo was used, as `bbuvl predict` keeps it when it resumes the file")
        return out


def photo_key(image: str, root: Path) -> tuple[str, str | None]:
    """A photo name's normalised absolute path, and its path inside `root` (None when it lies outside).

    Neither resolves symbolic links: a link is a photo of its own name, as `bbuvl predict` names it. Names are
    compared in NFC (`file_name_key`): a copy made on macOS names `é` decomposed, and `data check` takes both for one.
    """
    folder = file_name_key(str(root))
    absolute = os.path.normpath(os.path.join(folder, file_name_key(image)))
    inside = os.path.relpath(absolute, folder)
    return absolute, None if inside == ".." or inside.startswith(".." + os.sep) else Path(inside).as_posix()


def align_predictions(
    records: list[ImageRecord], gt_path: str | Path, predictions: list[PredictionLine], pred_path: str | Path | None = None,
) -> Alignment:
    """Pair each ground-truth record with the prediction line naming the same photo.

    A line names a photo relative to its own dataset (`prediction_root`: predict's input folder or JSONL), a
    record relative to the ground-truth JSONL's folder. They pair when both name one file, or the same path inside
    their datasets (predictions made on a copy of the dataset elsewhere). File names alone never pair: two
    folders may both hold an IMG_0001.jpg. A paired line made on a photo of another size, or of other content than
    its manifest recorded (`check_same_photos`), is an error naming both: it was not made on this photo. Without
    `pred_path`, line names are taken relative to the ground truth.
    """
    gt_root = real_path(gt_path).parent
    pred_root = prediction_root(pred_path) if pred_path is not None else gt_root
    by_path: dict[str, int] = {}
    by_inside: dict[str, int] = {}
    result = Alignment(predictions=[None] * len(records))
    for i, r in enumerate(records):
        absolute, inside = photo_key(r.image, gt_root)
        first = by_path.setdefault(absolute, i)
        if first != i:
            result.gt_repeats.append((first, i, r.image))
        if inside is not None:
            by_inside.setdefault(inside, i)

    for p in predictions:
        absolute, inside = photo_key(p.image, pred_root)
        found = by_path.get(absolute)
        if found is None and inside is not None:
            found = by_inside.get(inside)
        if found is None:
            result.unmatched.append(p)
            continue
        record = records[found]
        if p.width and p.height and (p.width, p.height) != record.size:
            raise DatasetError(pred_path or "predictions", p.line, _size_mismatch(p, record, found, gt_path))
        if result.predictions[found] is not None:
            # The later line wins, as `bbuvl predict` keeps it when it resumes the file (infer/output.py): the
            # same file scores alike before and after a resume.
            result.repeated.append(result.predictions[found])
        result.predictions[found] = p
    if pred_path is not None:
        check_same_photos(records, gt_path, result, pred_path)
    if predictions and records and len(result.unmatched) == len(predictions):
        raise DatasetError(pred_path or "predictions", predictions[0].line, (
            f"no prediction line names a photo of {gt_path} (none of its {len(predictions)}; this one names "
            f"{predictions[0].image}, relative to "
            f"{pred_root}); lines pair with records by the photo's path inside each dataset: predict on the ground "
            f"truth (bbuvl predict -i {gt_path}) or on its images folder"))
    return result


def _size_mismatch(p: PredictionLine, record: ImageRecord, index: int, gt_path: str | Path) -> str:
    """Why a line predicted at another size than its ground-truth record says: another photo, or (when the record's
    own photo is the predicted size) a record whose width/height are wrong, which predicting again would not mend."""
    photo = resolve_image(gt_path, record.image)
    info = probe_image(photo, decode=False) if photo.is_file() else None
    if isinstance(info, ImageInfo) and info.upright == (p.width, p.height):
        return (f"ground-truth record {index + 1} of {gt_path}: {check_size(record, record.image, info)}, the size "
                f"{p.image} was predicted at: the record's width/height are wrong, and its boxes may be in another "
                f"frame; fix them (bbuvl data check {gt_path} lists every such record)")
    return (f"photo {p.image} was predicted at {p.width}x{p.height}, but ground-truth photo {record.image} "
            f"({gt_path}, record {index + 1}) is {record.size[0]}x{record.size[1]}: they share a path inside their "
            f"datasets but are not the same photo; predict on the ground truth's own photos (bbuvl predict -i {gt_path})")


@dataclass
class PredictedPhotos:
    """What the manifest beside a predictions file says of the photos its lines were predicted on."""

    manifest: Manifest
    root: Path  # where the lines' photo names are resolved (`prediction_root`)
    recorded: dict[str, FileDigest]  # by name, as the manifest recorded them (empty in a manifest without digests)

    @classmethod
    def read(cls, pred_path: str | Path) -> "PredictedPhotos | None":
        """The manifest beside `pred_path` read; None without one (another tool's file)."""
        manifest = read_manifest(Path(pred_path))
        if manifest is None:
            return None
        recorded = {d.name: d for d in manifest.key.photos} if manifest.key is not None else {}
        return cls(manifest, prediction_root(pred_path), recorded)

    def digest(self, image: str) -> FileDigest | None:
        """The digest of the photo a line was predicted on: as the manifest recorded it, else (a manifest without
        digests) of the file there now; None when unknown."""
        if self.manifest.key is not None:
            found = self.recorded.get(image)
            return found if found is not None and found.sha256 != UNREADABLE else None
        try:
            return file_digest(self.root / image, image)
        except OSError:
            return None

    def differs(self, image: str, photo: Path) -> bool:
        """Whether `photo` has other content than the photo the line naming `image` was predicted on; False when
        either is unknown or unread (left to the rest of the reader). `photo` is trusted by its stat while it is the
        very file recorded, unchanged (data/digests.py)."""
        predicted = self.digest(image)
        if predicted is None:
            return False
        try:
            return file_digest(photo, image, {image: predicted}).sha256 != predicted.sha256
        except OSError:
            return False


def check_same_photos(records: list[ImageRecord], gt_path: str | Path, alignment: Alignment, pred_path: str | Path) -> None:
    """DatasetError when a paired line was predicted on a photo whose content differs from its ground-truth photo.

    Two synthetic datasets (or two sites' exports) name their photos alike, at the same size: only the content tells
    them apart. The manifest beside `pred_path` records each predicted photo's SHA-256 (infer/resume_key.py); an older
    manifest without it is compared with the predicted photo as it is on disk now. A file without a manifest (another
    tool's) is not checked. Photos unread at either end are left to the rest of eval. A ground-truth photo that is the
    very file predicted, unchanged since (same stat), is not hashed again (data/digests.py).
    """
    photos = PredictedPhotos.read(pred_path)
    if photos is None:
        return
    manifest = photos.manifest
    for i, (record, line) in enumerate(zip(records, alignment.predictions)):
        if line is not None and photos.differs(line.image, resolve_image(gt_path, record.image)):
            raise DatasetError(pred_path, line.line, (
                f"photo {line.image} was predicted from {manifest.input}, whose photo of that name has other content "
                f"than ground-truth photo {record.image} ({gt_path}, record {i + 1}): these predictions were made on "
                f"other photos (another dataset, or photos changed since); predict on the ground truth's own photos "
                f"(bbuvl predict -i {gt_path})"))


FRAME_SLACK = 0.05  # a box may overshoot its photo a little (a model's edge, rounding) before it is named


def beyond_frame_note(records: list[ImageRecord], alignment: Alignment, pred_path: str | Path | None) -> list[str]:
    """A note when predicted boxes reach more than FRAME_SLACK of a side beyond their photo: boxes written in another
    frame (0-1000, or a resized photo's pixels) score as misses and extras, and nothing else would say why."""
    count = boxes = photos = 0
    first = ""
    for record, p in zip(records, alignment.predictions):
        if p is None or not p.objects:
            continue
        w, h = record.size
        lo_x, lo_y, hi_x, hi_y = -FRAME_SLACK * w, -FRAME_SLACK * h, (1 + FRAME_SLACK) * w, (1 + FRAME_SLACK) * h
        out = [o["bbox_2d"] for o in p.objects
               if o["bbox_2d"][0] < lo_x or o["bbox_2d"][1] < lo_y or o["bbox_2d"][2] > hi_x or o["bbox_2d"][3] > hi_y]
        boxes += len(p.objects)
        if out:
            count += len(out)
            photos += 1
            first = first or (f"{pred_path or 'predictions'}:{p.line}: {p.image} is {w}x{h}, box "
                              f"[{', '.join(f'{v:g}' for v in out[0])}]")
    if not count:
        return []
    return [f"{count} of {boxes} predicted boxes, in {photos} photo(s), reach more than {FRAME_SLACK:.0%} of a side "
            f"beyond their photo ({first}): boxes are read in the photo's pixels, so boxes written in another frame "
            "(0-1000, or a resized photo's pixels) count as extra and their objects as missed"]
