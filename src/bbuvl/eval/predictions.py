"""Prediction files (what `bbuvl predict` writes) and pairing their lines with ground-truth photos.

One line per image:
    {"image": path, "width": W, "height": H,
     "objects": [{"bbox_2d": [x1, y1, x2, y2], "label": str, "score": float}], "raw": str | null, "error": str | null}
Boxes are in the pixels of the image file the prediction ran on.

`image` is the path as the predict input named it, so it may be absolute, relative to the dataset
JSONL, relative to the folder predict ran in, or a photo of the same name elsewhere. Pairing tries
those in that order and falls back to the file name when it is unique.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bbuvl.data.coords import scale_box
from bbuvl.data.schema import DatasetError, ImageRecord, iter_json_lines
from bbuvl.infer.parse import parse_detections


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
    return [_prediction_line(data, Path(path), no) for no, data in iter_json_lines(path, "predictions")]


def _prediction_line(data: Any, path: Path, no: int) -> PredictionLine:
    if isinstance(data, DatasetError):
        hint = " (a prediction run killed mid-line? re-run `bbuvl predict` with the same --out to finish it)"
        raise DatasetError(path, no, data.message + hint)
    if not isinstance(data, dict) or not isinstance(data.get("image"), str):
        raise DatasetError(path, no, "expected an object with an 'image' path (a `bbuvl predict` output line)")
    objects = []
    for i, o in enumerate(data.get("objects") or []):
        objects.append(_prediction_object(o, path, no, i))
    size = (data.get("width"), data.get("height"))
    valid_size = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    parse_ok = data.get("parse_ok")
    return PredictionLine(
        line=no, image=data["image"],
        width=size[0] if valid_size else None, height=size[1] if valid_size else None,
        objects=objects, raw=data.get("raw") if isinstance(data.get("raw"), str) else None,
        error=str(data["error"]) if data.get("error") else None,
        parse_ok=parse_ok if isinstance(parse_ok, bool) else None,
    )


def _prediction_object(o: Any, path: Path, no: int, i: int) -> dict[str, Any]:
    where = f"objects[{i}]"
    if not isinstance(o, dict):
        raise DatasetError(path, no, f"{where}: expected an object, got {type(o).__name__}")
    box = o.get("bbox_2d")
    if not (isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box)):
        raise DatasetError(path, no, f"{where}.bbox_2d: expected 4 numbers [x1, y1, x2, y2], got {box!r}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 < x1 or y2 < y1:
        raise DatasetError(path, no, f"{where}.bbox_2d: {box} has x2 < x1 or y2 < y1")
    label = o.get("label", o.get("desc"))
    if not isinstance(label, str) or not label:
        raise DatasetError(path, no, f"{where}: missing 'label'")
    score = o.get("score", 1.0)
    if not _finite(score):
        raise DatasetError(path, no, f"{where}.score: expected a number, got {score!r}")
    return {"bbox_2d": [x1, y1, x2, y2], "label": label, "score": float(score)}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class Alignment:
    """Prediction lines paired with ground-truth records.

    predictions[i] is the line for records[i], None when no line names that photo.
    """

    predictions: list[PredictionLine | None]
    unmatched: list[PredictionLine] = field(default_factory=list)  # lines naming no ground-truth photo
    repeated: list[PredictionLine] = field(default_factory=list)  # later lines for an already-paired photo
    rescaled: int = 0  # lines whose image size differed from the record's: boxes scaled to the record
    by_name: int = 0  # lines paired only by file name
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
            out.append(f"{len(self.repeated)} photo(s) have more than one prediction line: the first one was used")
        if self.by_name:
            out.append(f"{self.by_name} prediction line(s) were paired with ground truth by file name only")
        if self.rescaled:
            out.append(f"{self.rescaled} prediction line(s) were made on a copy of another size: "
                       "their boxes were scaled to the ground-truth image")
        return out


def _norm(path: str | Path) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


def align_predictions(
    records: list[ImageRecord], gt_path: str | Path, predictions: list[PredictionLine], pred_path: str | Path | None = None,
) -> Alignment:
    """Pair each ground-truth record with its prediction line by image path (absolute, then relative, then name)."""
    gt_dir = Path(gt_path).resolve().parent
    index = _PathIndex([_norm(gt_dir / r.image) for r in records])
    by_text: dict[str, int] = {}
    names: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_text.setdefault(r.image, i)
        names.setdefault(Path(r.image).name, []).append(i)
    bases = [gt_dir, Path.cwd()]
    if pred_path is not None:
        bases.insert(1, Path(pred_path).resolve().parent)

    result = Alignment(predictions=[None] * len(records))
    result.gt_repeats = [(index.plain[p], i, records[i].image) for i, p in enumerate(index.paths) if index.plain[p] != i]
    for p in predictions:
        found, by_name = _find(p.image, index, by_text, names, bases)
        if found is None:
            result.unmatched.append(p)
            continue
        if result.predictions[found] is not None:
            result.repeated.append(p)
            continue
        result.by_name += by_name
        record = records[found]
        if p.width and p.height and (p.width, p.height) != record.size:
            p = _rescaled(p, record.size)
            result.rescaled += 1
        result.predictions[found] = p
    return result


class _PathIndex:
    """Record index by normalised absolute path; symbolic links are resolved only when a plain lookup misses."""

    def __init__(self, paths: list[str]):
        self.paths = paths
        self.plain = {}
        for i, p in enumerate(paths):
            self.plain.setdefault(p, i)
        self._real: dict[str, int] | None = None

    def get(self, path: Path) -> int | None:
        hit = self.plain.get(_norm(path))
        if hit is not None:
            return hit
        if self._real is None:  # built once, on the first miss: realpath touches the file system
            self._real = {}
            for i, p in enumerate(self.paths):
                self._real.setdefault(os.path.realpath(p), i)
        return self._real.get(os.path.realpath(path))


def locate_image(image: str, pred_path: str | Path) -> Path:
    """The file a prediction line names: absolute, else next to the predictions file, else from the current folder."""
    p = Path(image)
    if p.is_absolute():
        return p
    beside = Path(pred_path).resolve().parent / p
    return beside if beside.exists() or not p.exists() else p.resolve()


def _find(
    image: str, index: _PathIndex, by_text: dict[str, int], names: dict[str, list[int]], bases: list[Path],
) -> tuple[int | None, bool]:
    """Index of the record `image` names, and whether only its file name matched."""
    candidates = [Path(image)] if Path(image).is_absolute() else [b / image for b in bases]
    for c in candidates:
        hit = index.get(c)
        if hit is not None:
            return hit, False
    if image in by_text:
        return by_text[image], False
    same_name = names.get(Path(image).name, [])
    if len(same_name) == 1:
        return same_name[0], True
    return None, False


def _rescaled(p: PredictionLine, size: tuple[int, int]) -> PredictionLine:
    src = (p.width, p.height)
    objects = [{**o, "bbox_2d": scale_box(o["bbox_2d"], src, size)} for o in p.objects]  # type: ignore[arg-type]
    return PredictionLine(p.line, p.image, size[0], size[1], objects, p.raw, p.error, p.parse_ok)
