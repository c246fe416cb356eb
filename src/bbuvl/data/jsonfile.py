"""Reading one small JSON file (labels, metrics, a contract, a model's config) with errors that name the file and the line.

Every whole-file JSON read goes through `read_json`; JSONL lines, HTTP bodies and model answers are parsed where
they are read, each with its own error (the line number, the status code, the parse failure). Files a user gives
(datasets, predictions, vendor exports) are parsed by `parse_json`.
"""

from __future__ import annotations

import errno
import json
import json.decoder
import re
import unicodedata
from pathlib import Path
from typing import Any

from bbuvl.data.input_paths import file_kind
from bbuvl.data.text import gbk_hint, show_text


# An integer of more digits than a float's range (1.8e308) is read as the float it rounds to (inf), which every box
# and size check already refuses by name. Python's own int would fail later as an OverflowError, and beyond 4,300
# digits at once, as a ValueError naming neither the file nor the line.
_FLOAT_DIGITS = 300


def _int_or_float(digits: str) -> int | float:
    return int(digits) if len(digits) <= _FLOAT_DIGITS else float(digits)


class DuplicateKeyError(ValueError):
    """A JSON object that names one key twice: every reader keeps the last value and silently drops the first.
    `lineno` and `colno` (from 1, as JSONDecodeError's) say where the key is named the second time, `first_lineno` where
    it is named first, when known."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {json.dumps(key, ensure_ascii=False)} appears twice in one object: one of its values "
                         "would be dropped without a word; keep one")
        self.key = key
        self.lineno: int | None = None
        self.colno: int | None = None
        self.first_lineno: int | None = None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        raise DuplicateKeyError(next(k for k, _ in pairs if k in seen or seen.add(k)))  # type: ignore[func-returns-value]
    return obj


# A repeated key (an export tool writing `"objects"` twice, a hand edit appending one) would otherwise lose its
# first value silently: the boxes of a photo, a whole COCO `annotations` list.
_DECODER = json.JSONDecoder(parse_int=_int_or_float, object_pairs_hook=_unique_keys)
_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, at: int) -> int:
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]  # the pattern matches the empty string too


def _duplicate_in(text: str, at: int) -> tuple[int, int] | None:
    """Where the key that the parser refused is named first and the second time (its opening quotes), in the value at
    `at`.

    The parser refuses the first object to close that names a key twice: a nested one before its parent. So each
    member is parsed again (at the C parser's speed; the hook is told the pairs, not where they are), a member that
    fails is searched first, and only then a key this object repeats itself."""
    at = _skip_space(text, at)
    closing, again = {"{": "}", "[": "]"}.get(text[at:at + 1]), None
    seen: dict[str, int] = {}  # key -> where it is named first
    at = _skip_space(text, at + 1)
    while closing is not None and text[at:at + 1] not in (closing, ""):
        if closing == "}":
            key, end = json.decoder.scanstring(text, at + 1)
            again = (seen[key], at) if again is None and key in seen else again
            seen.setdefault(key, at)
            value_at = _skip_space(text, _skip_space(text, end) + 1)  # past the ':'
        else:
            value_at = at
        try:
            _, end = _DECODER.raw_decode(text, value_at)
        except DuplicateKeyError:
            return _duplicate_in(text, value_at)
        at = _skip_space(text, end)
        if text[at:at + 1] != ",":  # the closing bracket
            break
        at = _skip_space(text, at + 1)
    return again


def _locate_duplicate(text: str, error: DuplicateKeyError) -> None:
    """Set `error`'s line and column, when the key can be found again (`_duplicate_in`)."""
    try:
        at = _duplicate_in(text, 0)  # (first, again)
    except (ValueError, RecursionError):  # not to be: the first parse read this far
        return
    if at is not None and json.decoder.scanstring(text, at[1] + 1)[0] == error.key:
        error.first_lineno = text.count("\n", 0, at[0]) + 1
        error.lineno = text.count("\n", 0, at[1]) + 1
        error.colno = at[1] - text.rfind("\n", 0, at[1])


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


def broken_at(e: json.JSONDecodeError) -> str:
    """Where in its line the syntax broke, and what stands there when the message alone would not show it: Python ends
    two of its messages with "at" ("Unterminated string starting at"), which read "starting at at column 12"."""
    return f"{e.msg.removesuffix(' at')} at column {e.colno}{unexpected_character(e) or _ends_early(e)}"


def _ends_early(e: json.JSONDecodeError) -> str:
    """'; the text ends there...' when the syntax broke only because the text ended (a string, an object or an array
    left open: a line or a file cut short), '' otherwise."""
    if e.msg.startswith("Unterminated string") or (e.msg.startswith("Expecting") and not e.doc[e.pos:].strip()):
        return "; the text ends before its JSON does: cut short?"
    return ""


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
        first = f" (first at line {e.first_lineno})" if e.first_lineno is not None else ""
        return f"line {e.lineno}, column {e.colno}{first}: {e}" if e.lineno is not None else str(e)
    if not e.doc.strip():
        return "empty: the file holds no JSON at all"
    return f"line {e.lineno}: not valid JSON ({broken_at(e)})"


def dumps_json(data: Any, indent: int | None = None) -> str:
    """`data` as JSON text, Chinese kept readable; with `\\udcbb` escapes where it holds text that is no UTF-8 (a path
    the user typed, of a folder named in GBK bytes), which no UTF-8 file holds: the writer failed with a codec error
    after the command's work. Python's json reads the escapes back to the same path."""
    try:
        text = json.dumps(data, ensure_ascii=False, indent=indent)
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(data, ensure_ascii=True, indent=indent)


def is_json_number(value: Any) -> bool:
    """Whether a parsed JSON value is a number (`true` and `false` parse as Python bools, which are ints too)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_LINE_END = re.compile(r"\r\n|\r|\n")


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text, split where a line ends (`\\n`, `\\r\\n`, `\\r`, as a file read line by line splits
    them): never inside a string, where JSON writes U+2028, U+2029 and U+0085 as they are, and str.splitlines() broke a
    line holding one (a photo's name, a model's answer) into two that are no JSON."""
    lines = _LINE_END.split(text)
    return lines[:-1] if lines and not lines[-1] else lines


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (`null`, `an array`): the file never wrote Python's `NoneType`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if is_json_number(value):
        return "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)


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
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what}") from None
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise OSError(f"{path}: a link that never reaches a file (its links lead in a loop), not a {what}") from None
    return parse_json_read(path, raw)


def parse_json_read(path: str | Path, raw: bytes) -> Any:
    """The parsed content of `raw`, read from `path` earlier; ValueError naming the file (and line), as `read_json`."""
    try:
        return parse_json(raw)  # UTF-8 (a BOM too), or UTF-16/32 as Windows tools save it
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {json_problem(e)}") from None
    except UnicodeDecodeError as e:
        why = gbk_hint(e.object) or "; is this a JSON file?"
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}){why}") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deep to read: thousands of [ or {{)") from None
    except DuplicateKeyError as e:
        raise ValueError(f"{path}: {json_problem(e)}") from None
