"""Turn a model's generated answer into detections, repairing what language models typically break.

The model is taught to answer `[{"bbox_2d": [x1, y1, x2, y2], "label": "category/attribute"}, ...]`.
What comes back may be wrapped in a code fence, surrounded by prose, cut off by the token limit, use
single quotes or trailing commas, name the label `desc` or `description` (docs/design.md),
give a box as a string, give three numbers instead of four, or repeat an object.

The parser never looks for "the" JSON array. It finds every innermost `{...}` in the text (an object
holds no nested object; a brace in a string of one that reads as JSON is text), reads each on its own,
and keeps those with a usable box and label. Prose, fences and wrapper objects (`{"objects": [...]}`) are
therefore ignored without special cases, and a truncated answer keeps every object that was closed before the cut.

Each repair is recorded in `ParseResult.damage`, once per occurrence, as one of the `DAMAGE_*` codes:

| code                | what happened                                   | what the parser does               |
|---------------------|-------------------------------------------------|------------------------------------|
| `code_fence`        | answer inside ``` fences                        | ignores the fences                 |
| `stray_text`        | prose before or after the JSON                  | ignores it                         |
| `truncated`         | answer cut off (unclosed object or array)       | keeps every complete object        |
| `single_quotes`     | `'` instead of `"`                              | reads it as JSON with `"`          |
| `trailing_comma`    | `,` before `]` or `}`                           | removes it                         |
| `unquoted_keys`     | `{bbox_2d: ...}`                                | quotes the keys                    |
| `label_key`         | label under `desc` / `description` / `category` | uses it as the label               |
| `box_as_string`     | `"bbox_2d": "[1, 2, 3, 4]"` or string numbers   | reads the numbers                  |
| `box_reordered`     | x1 > x2 or y1 > y2                              | swaps them                         |
| `box_wrong_length`  | 3 (or 5+) numbers, e.g. `[x1, y1, x2]`          | DROPS the object (no honest guess) |
| `box_not_numeric`   | box missing, empty, NaN/inf or not numbers      | drops the object                   |
| `no_label`          | no label key, or an empty label                 | drops the object                   |
| `bad_object`        | a `{...}` that no repair makes readable         | drops it                           |
| `duplicate`         | the same box and label again                    | drops it, unless `keep_repeats`    |

Prediction drops an exact repeat: it is no second object. GRPO's rewards keep it (`keep_repeats`): an answer that
writes an object twice wrote one extra object, which a reward that never saw it could not cost (docs/grpo.md,
"Rewards").

A 3-number box is dropped rather than completed: any fourth coordinate would be invented, and a
made-up box scored as a detection would distort AP more than a missing one.

`ok` is False when nothing usable came out although an answer was expected: no object survived and
the text is not an explicit empty list `[]`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

# A line's "error" when the model answered and nothing could be read from it: a result of the model, which eval counts
# as a parse failure, not a photo predict could not take
UNREADABLE_ANSWER = "unparseable output"
DAMAGE_CODE_FENCE = "code_fence"
DAMAGE_STRAY_TEXT = "stray_text"
DAMAGE_TRUNCATED = "truncated"
DAMAGE_SINGLE_QUOTES = "single_quotes"
DAMAGE_TRAILING_COMMA = "trailing_comma"
DAMAGE_UNQUOTED_KEYS = "unquoted_keys"
DAMAGE_LABEL_KEY = "label_key"
DAMAGE_BOX_AS_STRING = "box_as_string"
DAMAGE_BOX_REORDERED = "box_reordered"
DAMAGE_BOX_WRONG_LENGTH = "box_wrong_length"
DAMAGE_BOX_NOT_NUMERIC = "box_not_numeric"
DAMAGE_NO_LABEL = "no_label"
DAMAGE_BAD_OBJECT = "bad_object"
DAMAGE_DUPLICATE = "duplicate"

# OpenAI's `finish_reason` of an answer that wrote its own end, and of one its token budget ended: the chat route writes
# them (serve/openai.py) and `bbuvl.infer.openai_answers` reads a stock server's
FINISH_STOP, FINISH_LENGTH = "stop", "length"

BOX_KEYS = ("bbox_2d", "bbox", "box", "bbox2d")
LABEL_KEYS = ("label", "desc", "description", "category")

_FENCE = re.compile(r"```[A-Za-z0-9_-]*")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_EMPTY_LIST = re.compile(r"\[\s*\]")
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_UNQUOTED_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:")
_SINGLE_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
# Last resort for an object no repair makes valid JSON: pull the box and the label out by pattern.
_BOX_FIELD = re.compile(r"""["']?(?:bbox_2d|bbox2d|bbox|box)["']?\s*:\s*(\[[^\]\[{}]*\]?|"[^"]*"|'[^']*')""")
_LABEL_FIELD = re.compile(r"""["']?(label|desc|description|category)["']?\s*:\s*(?:"([^"]*)"|'([^']*)')""")


@dataclass
class ParseResult:
    """What the parser made of one answer.

    objects: `{"bbox_2d": [x1, y1, x2, y2] floats, "label": str, "span": (start, end)}` in text order,
    `span` being the object's character range in the text (for scoring its tokens).
    """

    objects: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = True
    damage: list[str] = field(default_factory=list)


def parse_detections(text: str, keep_repeats: bool = False) -> ParseResult:
    """Parse a generated answer into boxes and labels, each exact repeat dropped unless `keep_repeats` (recorded as
    `duplicate` either way); never raises (see the module docstring)."""
    try:
        return _parse(text if isinstance(text, str) else str(text), keep_repeats)
    except Exception:  # noqa: BLE001 - a parser bug must cost one image, never a whole prediction run
        return ParseResult(objects=[], ok=False, damage=[DAMAGE_BAD_OBJECT])


def answer_cut(text: str, budget_ended: bool | None) -> bool:
    """Whether an answer stopped with more to write, so that what it did not write may hold a fault: whether its token
    budget ended it (`budget_ended`: predict's grammar or token count, a server's `finish_reason`), or, where that is
    not known (None: an answer kept without its finish reason, or with one that says neither), whether its JSON list
    or an object never closes, as an unconstrained answer the budget ended never closes it."""
    if budget_ended is not None:
        return budget_ended
    return DAMAGE_TRUNCATED in parse_detections(text).damage


def _parse(text: str, keep_repeats: bool = False) -> ParseResult:
    damage: list[str] = []
    fences = list(_FENCE.finditer(text))
    if fences:
        damage.append(DAMAGE_CODE_FENCE)
    segments, unclosed = _leaf_objects(text)

    objects: list[dict[str, Any]] = []
    seen: set[tuple[tuple[float, ...], str]] = set()
    for start, end in segments:
        obj = _read_object(text[start:end], damage)
        if obj is None:
            continue
        key = (tuple(obj["bbox_2d"]), obj["label"])
        if key in seen:
            damage.append(DAMAGE_DUPLICATE)
            if not keep_repeats:
                continue
        seen.add(key)
        objects.append({**obj, "span": (start, end)})

    json_start, json_end = _json_extent(text, segments)
    if unclosed or _array_left_open(text, segments):
        damage.append(DAMAGE_TRUNCATED)
    if unclosed:
        json_end = len(text)  # the cut-off object is part of the answer, not prose after it
    if json_start is not None and _has_prose(text, fences, json_start, json_end):
        damage.append(DAMAGE_STRAY_TEXT)
    explicit_empty = _EMPTY_LIST.search(text) is not None and not any("box" in text[s:e] for s, e in segments)
    ok = bool(objects) or (explicit_empty and not unclosed)
    return ParseResult(objects=objects, ok=ok, damage=damage)


def _leaf_objects(text: str) -> tuple[list[tuple[int, int]], bool]:
    """Character ranges of every innermost `{...}`, and whether a `{` was left open at the end. An object that reads
    as JSON is taken whole, its strings with it: a label may hold a brace (`天线 {v2}`), which ended the object there
    and lost it, or (`q"}r`) read it back as another label."""
    segments, start, i = [], None, 0
    while i < len(text):
        ch = text[i]
        if ch == "{":
            if (end := _flat_object_end(text, i)) is not None:
                segments.append((i, end))
                start, i = None, end
                continue
            start = i
        elif ch == "}" and start is not None:
            segments.append((start, i + 1))
            start = None
        i += 1
    return segments, start is not None


# A `{...}` holding no other, its strings whole (a brace in one is text): found in one pass, then read alone, so that
# what does not read costs its own length, never the text's
_FLAT_OBJECT = re.compile(r'\{(?=\s*["}])(?:[^{}"]|"(?:[^"\\\n]|\\.)*+")*+\}')


def _flat_object_end(text: str, start: int) -> int | None:
    """Where the JSON object opening at `text[start]` ends, when it reads as one and holds no object; else None."""
    m = _FLAT_OBJECT.match(text, start)
    if m is None:
        return None
    try:
        value = json.loads(m[0])
    except (ValueError, RecursionError):
        return None
    flat = isinstance(value, dict) and not any(isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v)
                                               for v in value.values())
    return m.end() if flat else None


def _json_extent(text: str, segments: list[tuple[int, int]]) -> tuple[int | None, int]:
    """Where the JSON part of the answer starts and ends (the array around the objects when there is one)."""
    if segments:
        first, last = segments[0][0], segments[-1][1]
        bracket = text.rfind("[", 0, first)
        start = bracket if bracket >= 0 and not text[bracket + 1:first].strip(" \t\r\n,") else first
        close = re.compile(r"[\s,]*\]").match(text, last)
        return start, close.end() if close else last
    m = _EMPTY_LIST.search(text)
    if m:
        return m.start(), m.end()
    brace = text.find("{")
    return (brace, len(text)) if brace >= 0 else (None, 0)


def _array_left_open(text: str, segments: list[tuple[int, int]]) -> bool:
    """True when the objects sit in an array `[` that never closes: the answer stopped after an object."""
    if not segments:
        return False
    first, last = segments[0][0], segments[-1][1]
    bracket = text.rfind("[", 0, first)
    if bracket < 0 or text[bracket + 1:first].strip(" \t\r\n,"):
        return False
    return re.compile(r"[\s,]*\]").match(text, last) is None


def _has_prose(text: str, fences: list[re.Match], start: int, end: int) -> bool:
    """True when anything but whitespace and code fences lies outside `text[start:end]`."""
    outside = text[:start] + " " + text[end:]
    for f in fences:
        outside = outside.replace(f.group(0), " ", 1)
    return bool(outside.strip())


def _read_object(segment: str, damage: list[str]) -> dict[str, Any] | None:
    """One `{...}` as `{"bbox_2d", "label"}`, or None (with the reason appended to `damage`)."""
    data = _load_json_object(segment, damage)
    if data is None:
        data = _fields_by_pattern(segment)
        if data is None:
            damage.append(DAMAGE_BAD_OBJECT)
            return None
    if not any(k in data for k in BOX_KEYS + LABEL_KEYS):
        return None  # not a detection (e.g. metadata next to the list): nothing was lost
    box = _box(data, damage)
    if box is None:
        return None
    label = _label(data, damage)
    if label is None:
        return None
    return {"bbox_2d": box, "label": label}


def _load_json_object(segment: str, damage: list[str]) -> dict[str, Any] | None:
    """Decode `segment` as a JSON object, trying the usual repairs one after another."""
    data = _try_json(segment)
    if data is not None:
        return data
    repaired, fixes = segment, []
    if _TRAILING_COMMA.search(repaired):
        repaired = _TRAILING_COMMA.sub(r"\1", repaired)
        fixes.append(DAMAGE_TRAILING_COMMA)
    if "'" in repaired:
        quoted = _SINGLE_QUOTED.sub(lambda m: json.dumps(m.group(1).replace("\\'", "'"), ensure_ascii=False), repaired)
        if quoted != repaired:
            repaired = quoted
            fixes.append(DAMAGE_SINGLE_QUOTES)
    if _UNQUOTED_KEY.search(repaired):
        repaired = _UNQUOTED_KEY.sub(r'\1"\2":', repaired)
        fixes.append(DAMAGE_UNQUOTED_KEYS)
    data = _try_json(repaired)
    if data is not None:
        damage.extend(fixes)
    return data


def _try_json(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _fields_by_pattern(segment: str) -> dict[str, Any] | None:
    """The box and label fields found by regular expression in an object that is not JSON even after repair."""
    box = _BOX_FIELD.search(segment)
    label = _LABEL_FIELD.search(segment)
    if box is None and label is None:
        return None
    out: dict[str, Any] = {}
    if box is not None:
        out["bbox_2d"] = box.group(1).strip("'\"") if box.group(1)[:1] in "'\"" else box.group(1)
        if isinstance(out["bbox_2d"], str) and out["bbox_2d"].startswith("["):
            out["bbox_2d"] = [float(v) for v in _NUMBER.findall(out["bbox_2d"])]
    if label is not None:
        out[label.group(1)] = label.group(2) if label.group(2) is not None else label.group(3)
    return out


def _box(data: dict[str, Any], damage: list[str]) -> list[float] | None:
    """The object's box as four finite floats with x1 <= x2 and y1 <= y2, or None."""
    raw = next((data[k] for k in BOX_KEYS if k in data), None)
    if isinstance(raw, str):
        values: list[Any] = _NUMBER.findall(raw)
        damage.append(DAMAGE_BOX_AS_STRING)
    elif isinstance(raw, (list, tuple)):
        values = list(raw)
        if any(isinstance(v, str) for v in values):
            damage.append(DAMAGE_BOX_AS_STRING)
    else:
        damage.append(DAMAGE_BOX_NOT_NUMERIC)
        return None
    numbers = [_number(v) for v in values]
    if any(n is None for n in numbers) or not numbers:
        damage.append(DAMAGE_BOX_NOT_NUMERIC)
        return None
    if len(numbers) != 4:
        damage.append(DAMAGE_BOX_WRONG_LENGTH)
        return None
    x1, y1, x2, y2 = numbers  # type: ignore[misc]
    if x1 > x2 or y1 > y2:
        damage.append(DAMAGE_BOX_REORDERED)
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
    return [x1, y1, x2, y2]


def _number(value: Any) -> float | None:
    """A finite float from a JSON number or a numeric string; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        m = _NUMBER.fullmatch(value.strip())
        if m is None:
            return None
        value = m.group(0)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _label(data: dict[str, Any], damage: list[str]) -> str | None:
    """The object's label from `label`, else `desc` / `description` / `category`, or None."""
    for key in LABEL_KEYS:
        value = data.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
            if key != "label":
                damage.append(DAMAGE_LABEL_KEY)
            return str(value).strip()
    damage.append(DAMAGE_NO_LABEL)
    return None
