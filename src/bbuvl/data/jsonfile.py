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


_DECODER = json.JSONDecoder(parse_int=_int_or_float)


def parse_json(text: str | bytes) -> Any:
    """`json.loads(text)` (bytes in any UTF encoding), with integers too long for a float read as floats (inf)."""
    if isinstance(text, bytes):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    return _DECODER.decode(text)


def is_json_number(value: Any) -> bool:
    """Whether a parsed JSON value is a number (`true` and `false` parse as Python bools, which are ints too)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_json(path: str | Path, what: str = "file") -> Any:
    """The parsed content of `path`; FileNotFoundError or ValueError naming the file (and line) otherwise."""
    path = Path(path)
    try:
        return parse_json(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); is this a JSON file?") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deep to read: thousands of [ or {{)") from None
