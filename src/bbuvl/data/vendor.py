"""Reading the annotation platform's per-photo JSON into label parts and boxes.

Two shapes are known:

- FeatureCollection: `markResult.features[*]`, each an `ExtentPolygon` (a closed rectangle, nesting
  depth varies) whose label is `properties.contentZh["标签"]` (preferred) or `properties.content.label`;
  other `contentZh` keys are free-text remarks.
- DataList (older): `dataList[*]` with `coordinates` `[[x1, y1], [x2, y2]]` and the label split over
  `label`/`object_type`, `property`/`question`, `extra_info`/`question_ex`.

A `markResult` without its `features` key (a misspelt `Features`) is an error, never a photo of no part; so is a file
listing objects under both shapes (one would be dropped), while one shape left empty beside the other reads the other.

Nothing here maps or validates labels or knows about the image: boxes stay in the frame the annotator
saw (`info.width/height`), and label parts stay in the platform's vocabulary.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from bbuvl.data.jsonfile import is_json_number, json_kind
from bbuvl.data.schema import MAX_SIDE
from bbuvl.data.text import SEP, label_parts, name_as_text

LABEL_KEY_ZH = "标签"
# DataList property names, one tuple per label level (category, attribute, state); first non-empty wins.
DATALIST_KEYS = (("label", "object_type"), ("property", "question"), ("extra_info", "question_ex"))


@dataclass
class VendorObject:
    """One annotated object as the platform wrote it."""

    index: int  # position in the file's feature / dataList array (for error lines)
    parts: list[str]  # platform label parts, category first; empty parts dropped
    box: list[float]  # [x1, y1, x2, y2] in the annotator's frame
    extra: dict[str, str] = field(default_factory=dict)  # free-text remarks (e.g. "备注")

    @property
    def label(self) -> str:
        """The platform label as one path (what a user greps the export for)."""
        return SEP.join(self.parts)


@dataclass
class VendorProblem:
    """An object the file lists but that cannot be read (no label, unusable geometry)."""

    index: int
    reason: str
    label: str | None = None


@dataclass
class VendorAnnotation:
    """Everything usable in one vendor file."""

    source: str
    size: tuple[int, int] | None  # (width, height) the annotator saw; None when the file does not say
    objects: list[VendorObject]
    problems: list[VendorProblem]
    shape: str  # "featurecollection" or "datalist"


def parse_vendor(data: Any, source: str) -> VendorAnnotation:
    """Read one decoded vendor JSON; raises ValueError naming `source` for an unknown shape or a bad `info`."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {json_kind(data)}")
    size = _info_size(data.get("info"), source)
    features = _features(data["markResult"], source) if "markResult" in data else None
    items = data.get("dataList")
    if "dataList" in data and not isinstance(items, list) and (items is not None or features is None):
        raise ValueError(f"{source}: 'dataList' must be an array, got {json_kind(items)}")
    if features and items:
        # Reading one shape dropped the other's boxes without a word (a merge of two exports of one photo).
        raise ValueError(f"{source}: holds both 'markResult.features' ({len(features)}) and 'dataList' ({len(items)}); "
                         "reading one would drop the other's boxes: keep the one this photo's annotation is in")
    if features is not None and not items:
        objects, problems = _collect(features, _feature_object)
        return VendorAnnotation(source, size, objects, problems, "featurecollection")
    if items is not None:
        objects, problems = _collect(items, _datalist_object)
        return VendorAnnotation(source, size, objects, problems, "datalist")
    keys = ", ".join(sorted(map(str, data))) or "none"
    raise ValueError(
        f"{source}: unknown annotation shape (expected 'markResult.features' or 'dataList'; top-level keys: {keys})"
    )


def _info_size(info: Any, source: str) -> tuple[int, int] | None:
    """`(width, height)` from `info`, None when absent; a present but unusable size is an error."""
    if info is None or (isinstance(info, dict) and "width" not in info and "height" not in info):
        return None
    if not isinstance(info, dict):
        raise ValueError(f"{source}: 'info' must be an object, got {json_kind(info)}")
    try:
        w, h = _size_number(info["width"]), _size_number(info["height"])
    except (KeyError, TypeError):
        raise ValueError(
            f"{source}: 'info' must give a numeric width and height, got {_json(info.get('width'))} x {_json(info.get('height'))}"
        ) from None
    if not (math.isfinite(w) and math.isfinite(h)) or w <= 0 or h <= 0:
        raise ValueError(f"{source}: 'info' size {w:g}x{h:g} is not a positive finite size")
    if round(w) < 1 or round(h) < 1:  # a side of 0 px, which no photo has and every aspect ratio divides by
        raise ValueError(f"{source}: 'info' size {w:g}x{h:g} rounds to {round(w)}x{round(h)} pixels; a photo is at least 1x1")
    if max(w, h) > MAX_SIDE:
        raise ValueError(f"{source}: 'info' size {w:g}x{h:g} is larger than any image file can be")
    return (round(w), round(h))


# A number as JSON writes one: some exports quote their sizes ("64"), but Python's float() also reads "6_4" as 64,
# "٦٤" (Arabic-Indic digits) as 64 and "nan" as a number, none of which any tool meant as a width.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _size_number(value: Any) -> float:
    """A side of `info`: a JSON number, or one quoted as text; TypeError otherwise (`true` would be a 1-px side)."""
    if is_json_number(value):
        return float(value)
    if isinstance(value, str) and _JSON_NUMBER.fullmatch(value.strip()):
        return float(value)
    raise TypeError(value)


def _features(mark: Any, source: str) -> list[Any]:
    if not isinstance(mark, dict):
        raise ValueError(f"{source}: 'markResult' must be an object, got {json_kind(mark)}")
    if "features" not in mark:
        # A misspelt key ("Features") read as none made a photo of seventeen parts a photo of no part, which trains the
        # model to see nothing there; a photo without objects writes `"features": []`.
        keys = ", ".join(sorted(map(str, mark))) or "none"
        raise ValueError(f"{source}: 'markResult' has no 'features' array (its keys: {keys})")
    features = mark["features"]
    if not isinstance(features, list):
        raise ValueError(f"{source}: 'markResult.features' must be an array, got {json_kind(features)}")
    return features


def _collect(
    items: list[Any], read: Callable[[int, Any], VendorObject]
) -> tuple[list[VendorObject], list[VendorProblem]]:
    """Read every item with `read(index, item)`; an unreadable item becomes a problem for it alone."""
    objects, problems = [], []
    for i, item in enumerate(items):
        try:
            objects.append(read(i, item))
        except _ObjectError as e:
            problems.append(VendorProblem(i, e.reason, e.label))
    return objects, problems


class _ObjectError(ValueError):
    def __init__(self, reason: str, label: str | None = None):
        super().__init__(reason)
        self.reason, self.label = reason, label


def _feature_object(index: int, feature: Any) -> VendorObject:
    if not isinstance(feature, dict):
        raise _ObjectError(f"feature is {json_kind(feature)}, not an object")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise _ObjectError("feature 'properties' is not an object")
    zh = props.get("contentZh") or {}
    content = props.get("content") or {}
    zh = zh if isinstance(zh, dict) else {}
    content = content if isinstance(content, dict) else {}
    # The Chinese path is the one the hierarchy is written in; the English one is only a fallback.
    text = _label_text(zh.get(LABEL_KEY_ZH), f"contentZh['{LABEL_KEY_ZH}']") or _label_text(content.get("label"), "content.label")
    parts = _split(text)
    label = SEP.join(parts) or None
    if not parts:
        raise _ObjectError("no label (neither contentZh['标签'] nor content.label)")
    geometry = feature.get("geometry")
    if not isinstance(geometry, dict) or "coordinates" not in geometry:
        raise _ObjectError("feature has no geometry.coordinates", label)
    box = _extent(geometry["coordinates"], label)
    # A remark is free text the model never sees: half a character in it (a `\ud800` escape) is kept spelt out, not
    # the photo lost (no dataset line can hold it as it is)
    extra = {name_as_text(str(k)): name_as_text(_text(v)) for k, v in zh.items() if k != LABEL_KEY_ZH and _text(v)}
    return VendorObject(index, parts, box, extra)


def _datalist_object(index: int, item: Any) -> VendorObject:
    if not isinstance(item, dict):
        raise _ObjectError(f"dataList entry is {json_kind(item)}, not an object")
    props = item.get("properties") or {}
    if not isinstance(props, dict):
        raise _ObjectError("dataList 'properties' is not an object")
    # Each level may itself hold a '/' path in some exports, so split every level and concatenate.
    parts = [p for keys in DATALIST_KEYS for p in _split(_first_text(props, keys))]
    label = SEP.join(parts) or None
    if not parts:
        raise _ObjectError("no label (none of label/object_type, property/question, extra_info/question_ex)")
    if "coordinates" not in item:
        raise _ObjectError("dataList entry has no 'coordinates'", label)
    return VendorObject(index, parts, _extent(item["coordinates"], label))


def _first_text(props: dict[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        text = _label_text(props.get(key), key)
        if text:
            return text
    return ""


def _text(value: Any) -> str:
    """A property value as stripped text ('' for null and empty values); a number, list or object as the file wrote
    it (str() gave a remark `{'a': [1]}` in Python's spelling, and `true` as `True`)."""
    if value is None:
        return ""
    return (value if isinstance(value, str) else _json(value)).strip()


def _label_text(value: Any, key: str) -> str:
    """A label property as stripped text; _ObjectError for an array, an object or a boolean, which str() would turn
    into a label like "['线缆']" that names no part."""
    if isinstance(value, (list, dict, bool)):
        raise _ObjectError(f"{key} is {_short(value)}, not the text of a label")
    return _text(value)


def _split(text: str) -> list[str]:
    return label_parts(text)


def _extent(coords: Any, label: str | None) -> list[float]:
    """Axis-aligned box `[x1, y1, x2, y2]` around all points of an arbitrarily nested coordinate array."""
    try:
        points = list(_points(coords))
    except _ObjectError as e:
        raise _ObjectError(e.reason, label) from None
    if not points:
        raise _ObjectError(f"no [x, y] points in coordinates {_short(coords)}", label)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


def _points(coords: Any) -> Iterator[tuple[float, float]]:
    if isinstance(coords, list) and len(coords) != 2 and coords and all(is_json_number(v) for v in coords):
        # [x, y, z] (a GeoJSON height) or a flat [x1, y1, x2, y2]: no reading of it is safe, so it is named whole.
        raise _ObjectError(f"point {_json(coords[:6])[:-1]}{', ...' if len(coords) > 6 else ''}] has {len(coords)} "
                           "numbers; a point is [x, y]")
    if isinstance(coords, list) and len(coords) == 2 and all(is_json_number(v) for v in coords):
        x, y = float(coords[0]), float(coords[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise _ObjectError(f"coordinate [{x}, {y}] is not finite")
        yield (x, y)
    elif isinstance(coords, list):
        for c in coords:
            yield from _points(c)
    elif isinstance(coords, str):  # a quoted number is text, which no point of the platform's is
        raise _ObjectError(f"coordinates hold the text {_json(coords[:40])}, not [x, y] pairs of numbers")
    else:
        raise _ObjectError(f"coordinates hold {_short(coords)}, not [x, y] pairs")


def _json(value: Any) -> str:
    """`value` as the file wrote it (`true`, `"64"`), not as Python shows it."""
    return json.dumps(value, ensure_ascii=False)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
