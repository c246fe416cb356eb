"""Reading one small JSON file (labels, metrics, a contract, a model's config) with errors that name the file and the line.

Every whole-file JSON read goes through `read_json`; JSONL lines, HTTP bodies and model answers are parsed where
they are read, each with its own error (the line number, the status code, the parse failure). Files a user gives
(datasets, predictions, vendor exports) are parsed by `parse_json`.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
import unicodedata
from pathlib import Path
from typing import Any

from bbuvl.data.input_paths import file_kind
from bbuvl.data.text import show_text


# An integer of more digits than a float's range (1.8e308) is read as the float it rounds to (inf), which every box
# and size check already refuses by name. Python's own int would fail later as an OverflowError, and beyond 4,300
# digits at once, as a ValueError naming neither the file nor the line.
_FLOAT_DIGITS = 300


def _int_or_float(digits: str) -> int | float:
    return int(digits) if len(digits) <= _FLOAT_DIGITS else float(digits)


class DuplicateKeyError(ValueError):
    """A JSON object that names one key twice: every reader keeps the last value and silently drops the first.
    `lineno` and `colno` (from 1, as JSONDecodeError's) say where the key is named the second time, when known."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {json.dumps(key, ensure_ascii=False)} appears twice in one object: one of its values "
                         "would be dropped without a word; keep one")
        self.key = key
        self.lineno: int | None = None
        self.colno: int | None = None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        raise DuplicateKeyError(next(k for k, _ in pairs if k in seen or seen.add(k)))  # type: ignore[func-returns-value]
    return obj


# A repeated key (an export tool writing `"objects"` twice, a hand edit appending one) would otherwise lose its
# first value silently: the boxes of a photo, a whole COCO `annotations` list.
_DECODER = json.JSONDecoder(parse_int=_int_or_float, object_pairs_hook=_unique_keys)
# Skips a value while the second key of an object is looked for: its own duplicates do not matter there.
_LENIENT = json.JSONDecoder(parse_int=_int_or_float)
_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, at: int) -> int:
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]  # the pattern matches the empty string too


def _second_key_at(text: str, start: int) -> int | None:
    """Where, in the object whose `{` ends just before `start`, a key is named the second time (its opening quote)."""
    seen: set[str] = set()
    at = start
    while True:
        at = _skip_space(text, at)
        if text[at:at + 1] != '"':
            return None
        key, end = json.decoder.scanstring(text, at + 1)
        if key in seen:
            return at
        seen.add(key)
        _, end = _LENIENT.raw_decode(text, _skip_space(text, _skip_space(text, end) + 1))  # the value after the ':'
        at = _skip_space(text, end) + 1  # past the ',' (or the '}')


def _locate_duplicate(text: str, error: DuplicateKeyError) -> None:
    """Set `error`'s line and column: the first object (innermost first) that names a key twice, parsed again with
    the pure-Python scanner, whose objects can be watched, since the parser's hook is told the pairs, not where."""
    found: list[int | None] = []

    def parse_object(s_and_end: tuple[str, int], *args: Any) -> Any:
        try:
            return json.decoder.JSONObject(s_and_end, *args)
        except DuplicateKeyError:
            if not found:
                found.append(_second_key_at(*s_and_end))
            raise

    decoder = json.JSONDecoder(parse_int=_int_or_float, object_pairs_hook=_unique_keys)
    decoder.parse_object = parse_object  # type: ignore[assignment]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        decoder.decode(text)
    except (ValueError, RecursionError):  # the DuplicateKeyError found, or a file the first parse also refused
        pass
    if found and found[0] is not None:
        error.lineno = text.count("\n", 0, found[0]) + 1
        error.colno = found[0] - text.rfind("\n", 0, found[0])


def parse_json(text: str | bytes) -> Any:
    """`json.loads(text)` (bytes in any UTF encoding), with integers too long for a float read as floats (inf);
    DuplicateKeyError, with the line and column of the key named again, for an object that names a key twice."""
    if isinstance(text, bytes):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    try:
        return _DECODER.decode(text)
    except DuplicateKeyError as e:
        _locate_duplicate(text, e)
        raise


# Typographic quotes a word processor or a Chinese input method puts where JSON needs its ASCII quote.
_TYPOGRAPHIC = {"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u300c": '"', "\u300d": '"'}


def unexpected_character(e: json.JSONDecodeError) -> str:
    """What stands where the syntax broke when the message alone would not show it ('' otherwise): a full-width
    `：` or `，` typed for `:` or `,`, a typographic quote, or an invisible character (a BOM mid-line, a no-break
    space), all of which look like valid JSON on screen."""
    char = e.doc[e.pos:e.pos + 1]
    if not char or char.isascii():
        return ""
    ascii_form = _TYPOGRAPHIC.get(char) or unicodedata.normalize("NFKC", char)
    if ascii_form.isascii() and ascii_form.strip():
        return f"; there it holds {show_text(char)} where JSON takes only the ASCII {show_text(ascii_form)}"
    if not char.isprintable():
        return f"; there it holds the invisible character {show_text(char)}"
    return ""


def json_problem(e: json.JSONDecodeError | DuplicateKeyError) -> str:
    """What is wrong with a whole JSON file: where its syntax breaks, or that it holds nothing (0 bytes, only spaces),
    which the parser words as "Expecting value at line 1 column 1", as if a value were mistyped; or where it names a
    key twice."""
    if isinstance(e, DuplicateKeyError):
        return f"line {e.lineno}, column {e.colno}: {e}" if e.lineno is not None else str(e)
    if not e.doc.strip():
        return "empty: the file holds no JSON at all"
    return f"line {e.lineno}: not valid JSON ({e.msg} at column {e.colno}{unexpected_character(e)})"


def is_json_number(value: Any) -> bool:
    """Whether a parsed JSON value is a number (`true` and `false` parse as Python bools, which are ints too)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_json(path: str | Path, what: str = "file") -> Any:
    """The parsed content of `path`; FileNotFoundError or ValueError naming the file (and line) otherwise, and an
    OSError naming what `path` is when it is a folder, a pipe or a device."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "a folder":
        raise IsADirectoryError(f"{path}: a folder, not a {what}")
    if kind not in (None, "no such file", "a link that reaches no file"):  # reading a pipe waited for a writer forever
        raise OSError(f"{path}: {kind}, not a {what}")
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
        raise ValueError(f"{path}: {json_problem(e)}") from None
