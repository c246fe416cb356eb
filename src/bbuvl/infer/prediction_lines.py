"""A line of `bbuvl predict`'s output, read as every reader of it reads it: eval, viz, choose-tiles, and predict itself
when it resumes the file (infer/output.py `repair_output`).

One line per image:
    {"image": path, "width": W, "height": H,
     "objects": [{"bbox_2d": [x1, y1, x2, y2], "label": str, "score": float}], "raw": str | null, "error": str | null}
Boxes are in the pixels of the image file the prediction ran on. A line that does not read (a box of strings, a score
past 1) is a DatasetError naming file:line: eval refuses it, and a resume predicts its photo again rather than keep it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from bbuvl.data.jsonfile import is_json_number, json_kind
from bbuvl.data.schema import DatasetError
from bbuvl.data.text import not_text, show_text
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


def prediction_line(data: Any, path: Path, no: int) -> PredictionLine:
    """A line of predictions as read from its JSON (`data`, or the DatasetError reading it gave); DatasetError naming
    `path`:`no` when it is no line `bbuvl predict` writes (a hand edit, a line of another file)."""
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
    size = (_pixels(data, "width", path, no), _pixels(data, "height", path, no))
    valid_size = all(size)  # 0 or null: not known (predict writes 0 x 0 for a photo it could not read)
    parse_ok = data.get("parse_ok")
    return PredictionLine(
        line=no, image=data["image"],
        width=size[0] if valid_size else None, height=size[1] if valid_size else None,
        objects=objects, raw=data.get("raw") if isinstance(data.get("raw"), str) else None,
        error=str(data["error"]) if data.get("error") else None,
        parse_ok=parse_ok if isinstance(parse_ok, bool) else None, cut=data.get("cut") is True,
        tiled=data.get("tiled") is True,
    )


def _pixels(data: dict[str, Any], key: str, path: Path, no: int) -> int | None:
    """The line's `key` (width or height) as a whole number of pixels, None when absent or null; DatasetError naming
    `path`:`no` for anything else. A width of "224", -224 or 1e999 (inf) was taken for none, so the check that pairs a
    line with its ground-truth photo by size was skipped without a word."""
    value = data.get(key)
    if value is None:
        return None
    if is_json_number(value) and math.isfinite(value) and value >= 0 and value == int(value):
        return int(value)
    shown = (repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool)
             else json_kind(value) if isinstance(value, (list, dict)) else value)
    raise DatasetError(path, no, f"{key}: expected the photo's {key} in pixels (a whole number, or null), got {shown}")


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
        raise DatasetError(path, no, f"{where}.bbox_2d: expected 4 numbers [x1, y1, x2, y2], got {as_written(box)}"
                                     f"{not_a_coordinate(box)}")
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
        raise DatasetError(path, no, f"{where}.score: expected a number, got {as_written(score)}")
    if not 0 <= score <= 1:
        # A score past 1 would fail its photo at every threshold a verdict can have, a negative one pass it at all.
        raise DatasetError(path, no, f"{where}.score: {score!r} is outside [0, 1]; a score is the model's confidence "
                                     "(`bbuvl predict` writes it in [0, 1]): rescale the scores")
    return {"bbox_2d": [x1, y1, x2, y2], "label": label, "score": float(score)}


def as_written(value: Any, limit: int = 200) -> str:
    """A value read from a JSON line, spelt as the line spells it (null, NaN, Infinity, "12"), cut to `limit`."""
    # Python's spelling named a null coordinate `None` and NaN `nan`, words the file does not hold
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def not_a_coordinate(box: Any) -> str:
    """Why a box holding NaN, an infinity or null has no place, said after its error; empty for any other box."""
    if not isinstance(box, list) or not any(v is None or (isinstance(v, float) and not math.isfinite(v)) for v in box):
        return ""
    return ("; NaN, Infinity and null are no coordinates (an older bbu-vl wrote NaN for a detection head whose "
            "weights diverged, where it now writes the photo's error): predict the photo again, or remove the line")


def _finite(v: Any) -> bool:
    return is_json_number(v) and math.isfinite(v)
