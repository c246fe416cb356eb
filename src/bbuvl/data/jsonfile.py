"""Reading one small JSON file (labels, metrics, a contract, a model's config) with errors that name the file and the line.

Every whole-file JSON read goes through `read_json`; JSONL lines, HTTP bodies and model answers are parsed where
they are read, each with its own error (the line number, the status code, the parse failure). Files a user gives
(datasets, predictions, vendor exports) are parsed by `parse_json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


# An integer of more digits than a float's range (1.8e308) is read as the float it rounds to (inf), which every box
# and size check already refuses by name. Python's own int would fail later as an OverflowError, and beyond 4,300
# digits at once, as a ValueError naming neither the file nor the line.
_FLOAT_DIGITS = 300


def _int_or_float(digits: str) -> int | float:
    return int(digits) if len(digits) <= _FLOAT_DIGITS else float(digits)


class DuplicateKeyError(ValueError):
    """A JSON object that names one key twice: every reader keeps the last value and silently drops the first."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise DuplicateKeyError(f"key {json.dumps(key, ensure_ascii=False)} appears twice in one object: one of its "
                                "values would be dropped without a word; keep one")
    return obj


# A repeated key (an export tool writing `"objects"` twice, a hand edit appending one) would otherwise lose its
# first value silently: the boxes of a photo, a whole COCO `annotations` list.
_DECODER = json.JSONDecoder(parse_int=_int_or_float, object_pairs_hook=_unique_keys)


def parse_json(text: str | bytes) -> Any:
    """`json.loads(text)` (bytes in any UTF encoding), with integers too long for a float read as floats (inf);
    DuplicateKeyError for an object that names a key twice."""
    if isinstance(text, bytes):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    return _DECODER.decode(text)


def json_problem(e: json.JSONDecodeError) -> str:
    """What is wrong with a whole JSON file: where its syntax breaks, or that it holds nothing (0 bytes, only spaces),
    which the parser words as "Expecting value at line 1 column 1", as if a value were mistyped."""
    if not e.doc.strip():
        return "empty: the file holds no JSON at all"
    return f"line {e.lineno}: not valid JSON ({e.msg} at column {e.colno})"


def is_json_number(value: Any) -> bool:
    """Whether a parsed JSON value is a number (`true` and `false` parse as Python bools, which are ints too)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_json(path: str | Path, what: str = "file") -> Any:
    """The parsed content of `path`; FileNotFoundError or ValueError naming the file (and line) otherwise."""
    path = Path(path)
    try:
        return parse_json(path.read_bytes())  # UTF-8 (a BOM too), or UTF-16/32 as Windows tools save it
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {json_problem(e)}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); is this a JSON file?") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deep to read: thousands of [ or {{)") from None
    except DuplicateKeyError as e:
        raise ValueError(f"{path}: {e}") from None
