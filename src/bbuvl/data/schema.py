"""The canonical dataset: one JSONL line per photo (or an explicit teachers/student sample).

    {"images": ["images/0001.jpeg"], "width": W, "height": H,
     "objects": [{"bbox_2d": [x1, y1, x2, y2], "desc": "螺丝连接点/BBU安装螺丝/连接正确"}]}

Image paths are relative to the JSONL file; boxes are absolute pixels of the stored image file;
objects are sorted by (y1, x1). `{"teachers": [record, ...], "student": record}` is also accepted.
"""

from __future__ import annotations

import difflib
import io
import functools
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any, Iterable, Iterator

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from bbuvl.atomic import atomic_path
from bbuvl.data.images import photo_digests
from bbuvl.data.input_paths import file_kind, find_file
from bbuvl.data.jsonfile import DuplicateKeyError, broken_at, json_kind, parse_json
from bbuvl.data.text import (bom_encoding, clean_label, gbk_hint, label_problem, not_text, one_line, shell_word,
                             short_words, show_text)
from bbuvl.paths import real_path


def _json_number(value: Any) -> Any:
    """`value` unchanged unless JSON typed it as a string or a boolean, which pydantic would read as numbers."""
    # pydantic's lax mode reads "10" as 10 and true as 1. A quoted number or a boolean where a coordinate or a size
    # belongs is another tool's format or a typo, and is refused where the error can still name the file and line.
    if isinstance(value, bool) or isinstance(value, str):
        # Quoted as JSON spells it, ASCII-escaped when it is no UTF-8 text: pydantic failed with a UnicodeEncodeError
        # on a message holding half a character (`"width": "\ud800"`), a traceback in `data check`
        shown = json.dumps(value, ensure_ascii=isinstance(value, str) and not_text(value) is not None)
        raise ValueError(f"{shown} is a {'boolean' if isinstance(value, bool) else 'string'}, not a number")
    return value


# No image format stores a side longer than this (TIFF's 32-bit width); a size past it is no photo's.
MAX_SIDE = 2**32 - 1


def _json_side(value: Any) -> Any:
    """`value` unless it is a number past MAX_SIDE, which pydantic would call "unable to parse input string"."""
    value = _json_number(value)
    if isinstance(value, (int, float)) and math.isfinite(value) and value > MAX_SIDE:  # inf: "not a finite number"
        raise ValueError(f"{value:g} is longer than any image file's side ({MAX_SIDE})")
    return value


def _json_text(value: Any) -> Any:
    """`value` unless it is a string that is no UTF-8 text (data/text.py, `not_text`): accepted, it failed every writer
    of the dataset (split, tile, export-coco) with a codec error naming no file or line, after `data check` passed."""
    problem = not_text(value) if isinstance(value, str) else None
    if problem is not None:
        raise ValueError(problem)
    return value


JsonText = Annotated[str, BeforeValidator(_json_text)]
JsonFloat = Annotated[float, BeforeValidator(_json_number)]
JsonSide = Annotated[int, BeforeValidator(_json_side)]


class ObjectAnn(BaseModel):
    """One labelled box."""

    model_config = ConfigDict(extra="forbid")

    bbox_2d: list[JsonFloat] = Field(min_length=4, max_length=4)
    desc: JsonText = Field(min_length=1)
    extra: dict[JsonText, JsonText] | None = None  # free-text keys from the platform (remarks), never shown to the model

    @field_validator("bbox_2d")
    @classmethod
    def _ordered(cls, v: list[float]) -> list[float]:
        # JSON readers accept NaN and Infinity; such a box has no place and no size, so it is refused here, where
        # the error can still name the file and line.
        if not all(math.isfinite(c) for c in v):
            raise ValueError(f"box {v} has a coordinate that is not a finite number (NaN or infinity)")
        if v[2] < v[0] or v[3] < v[1]:
            raise ValueError(f"box {v} is not [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
        return v

    @field_validator("desc")
    @classmethod
    def _clean(cls, v: str) -> str:
        # An invisible character pasted into a label would be learnt and emitted by the model; it never belongs.
        cleaned, problem = _checked_label(v)
        if problem:
            raise ValueError(problem)
        return cleaned


@functools.lru_cache(maxsize=4096)
def _checked_label(text: str) -> tuple[str, str | None]:
    """A label cleaned, and why it cannot be one (None when it can), once per spelling: a dataset names a few dozen
    labels over and over, and checking each of 300,000 objects' took half of reading 20,000 lines (`data stats`)."""
    problem = label_problem(text)
    return ("" if problem else clean_label(text)), problem


class ImageRecord(BaseModel):
    """One photo with its objects."""

    model_config = ConfigDict(extra="forbid")

    images: list[JsonText] = Field(min_length=1)
    width: JsonSide = Field(gt=0)
    height: JsonSide = Field(gt=0)
    objects: list[ObjectAnn] = Field(default_factory=list)
    id: JsonText | None = None
    source: JsonText | None = None  # where it came from (vendor file), for tracing errors back
    # Stored pixels per pixel of the photo this one was cut from (`bbuvl data tile --zoom`); None: as taken. Lets a
    # run know the scale it trained at (data/scale.py), which tiles' `auto` grid reuses.
    magnified: JsonFloat | None = Field(None, gt=0)

    @field_validator("images")
    @classmethod
    def _one_photo(cls, v: list[str]) -> list[str]:
        # Every reader takes `images[0]`: a second photo would pass every check and never be trained on or scored.
        if not v[0].strip():  # it would name the JSONL's own folder, reported as "a folder, not an image file"
            raise ValueError("the image path is empty")
        if len(v) > 1:
            raise ValueError(f"a record holds one photo, this one lists {len(v)} ({', '.join(map(show_text, v[:3]))}"
                             f"{' ...' if len(v) > 3 else ''}): write one record per photo, each with its own boxes")
        return v

    @property
    def image(self) -> str:
        """The image path, relative to the JSONL file."""
        return self.images[0]

    @property
    def size(self) -> tuple[int, int]:
        """`(width, height)` of the stored image."""
        return (self.width, self.height)

    def sorted(self) -> "ImageRecord":
        """A copy with objects in reading order (y1, then x1)."""
        return self.model_copy(update={"objects": sort_objects(self.objects)})


class Sample(BaseModel):
    """A training sample: a student photo and, optionally, teacher photos shown before it."""

    model_config = ConfigDict(extra="forbid")

    student: ImageRecord
    teachers: list[ImageRecord] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _plain_record(cls, data: Any) -> Any:
        if isinstance(data, dict) and "student" not in data and "teachers" not in data:
            return {"student": data}
        return data


def sort_objects(objects: Iterable[ObjectAnn]) -> list[ObjectAnn]:
    """Objects in the order the model is taught to emit them: by y1, then x1."""
    return sorted(objects, key=lambda o: (o.bbox_2d[1], o.bbox_2d[0]))


class DatasetError(ValueError):
    """A problem in a dataset file, located as `file:line`."""

    def __init__(self, path: str | Path, line: int, message: str):
        # a 50,000-character label or path is shown cut, and a line end in a photo's name spelt: the line kept readable
        message = one_line(short_words(message))
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")  # line 0: the whole file


_KNOWN_KEYS = {
    "record": list(ImageRecord.model_fields),
    "object": list(ObjectAnn.model_fields),
    "sample": list(Sample.model_fields),
}


# At most this many of a line's problems are named: a file of another kind (predictions given as a dataset) has one
# per object, and a screenful of them would hide the one that says what the file is.
_MAX_PROBLEMS = 4


def _describe(err: ValidationError, plain: bool = False) -> str:
    """One readable sentence per pydantic error (the record's own first), with a did-you-mean for unknown keys;
    `plain`: the line is a plain record, which has no `student` key to name."""
    parts = []
    for e in sorted(err.errors(), key=lambda e: len(e["loc"])):
        where = e["loc"][1:] if plain and e["loc"][:1] == ("student",) else e["loc"]
        loc = ".".join(str(p) for p in where)
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            kind = "object" if "objects" in e["loc"] else "record"
            close = difflib.get_close_matches(key, _KNOWN_KEYS[kind] + (["desc"] if kind == "object" else []), n=1)
            if kind == "object" and key in ("label", "description", "caption"):
                close = ["desc"]
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            parts.append(f"unknown key '{loc}'{hint}")
        elif e["type"] == "missing":
            parts.append(f"missing key '{loc}'")
        else:  # pydantic prefixes our validators' own sentences with "Value error, ", which tells the user nothing
            parts.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}")
    more = [f"and {len(parts) - _MAX_PROBLEMS} more"] if len(parts) > _MAX_PROBLEMS else []
    return "; ".join(parts[:_MAX_PROBLEMS] + more)


def parse_sample(obj: Any, path: str | Path = "<memory>", line: int = 0) -> Sample:
    """Validate one decoded JSON line into a Sample (raises DatasetError naming file:line)."""
    if not isinstance(obj, dict):
        raise DatasetError(path, line, f"expected a JSON object, got {json_kind(obj)}")
    try:
        return Sample.model_validate(obj)
    except ValidationError as e:
        raise DatasetError(path, line, _describe(e, plain="student" not in obj and "teachers" not in obj)) from None
    except UnicodeError:  # pydantic could not word an error about text that is no UTF-8: the line's error all the same
        raise DatasetError(path, line, "holds text that is not UTF-8 (half a character, a JSON \\ud800 escape) where "
                                       "it cannot be: rewrite the line") from None


@dataclass
class Row:
    """One line of a JSONL file: its number and either the sample or the error."""

    line: int
    sample: Sample | None
    error: DatasetError | None


# A photo with ten thousand boxes is about a megabyte a line. A file with no line breaks (an archive, a video, a
# database dump given by mistake) was read whole as its first line: 480 MB of memory for 200 MB of zeros.
MAX_LINE_CHARS = 64 * 2**20


def _lines(fh: IO[str]) -> Iterator[tuple[int, str | None]]:
    """Each line of `fh` with its number; None for a line longer than MAX_LINE_CHARS, read past without keeping it."""
    no = 0
    while text := fh.readline(MAX_LINE_CHARS):
        no += 1
        if len(text) < MAX_LINE_CHARS or text.endswith("\n"):
            yield no, text
            continue
        while (rest := fh.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
            pass
        yield no, None


def iter_json_lines(path: str | Path, what: str = "dataset") -> Iterator[tuple[int, Any]]:
    """`(line number, decoded JSON or DatasetError)` for each non-blank line of a JSONL file; DatasetError raised when
    it cannot be opened or its first line is not text."""
    path = Path(path)
    kind = file_kind(path)
    if kind not in (None, "no such file", "a link that reaches no file"):  # those two: open() names them below
        # A pipe with no writer waited forever; a dataset is also the folder its photos are found from.
        raise DatasetError(path, 0, f"{kind}, not a JSONL {what} file")
    try:
        # A BOM (Windows editors write one) is no part of the first line; bytes that are not UTF-8 are kept as
        # surrogates, so that their line is an error of its own and the lines after it are still read. A file saved
        # as UTF-16 (Notepad's "Unicode") is read as such, as JSON files are (data/jsonfile.py): it was refused as
        # "not UTF-8 text (byte 0xff at column 1)", its encoding unsaid.
        # One open: the BOM is peeked at, not read, and the text is decoded from the same handle.
        raw = path.open("rb")
        fh = io.TextIOWrapper(raw, encoding=bom_encoding(raw.peek(4)[:4]) or "utf-8-sig", errors="surrogateescape")
    except OSError as e:
        raise DatasetError(path, 0, f"cannot open {what}: {e.strerror or e}") from None
    with fh:
        read = False
        for no, text in _lines(fh):
            if text is None:
                error = DatasetError(path, no, f"a line longer than {MAX_LINE_CHARS} characters, which no {what} line "
                                               f"is; is this a JSONL {what} file?")
                if not read:
                    raise error
                yield no, error
                continue
            if not text.strip():
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                why = gbk_hint(text.encode("utf-8", "surrogateescape")) or f"; is this a JSONL {what} file?"
                error = DatasetError(path, no, f"not UTF-8 text (byte 0x{ord(text[e.start]) - 0xDC00:02x} at column "
                                               f"{e.start + 1}){why}")
                if not read:  # a photo or an archive: one error for the file, not one per chunk of its bytes
                    raise error from None
                yield no, error
                continue
            read = True
            try:
                # Without its line break, a line cut short is reported at its own end, not at column 1 of the next
                yield no, parse_json(text.rstrip("\r\n").removeprefix("\ufeff"))  # files joined with `cat` carry a BOM mid-file
            except json.JSONDecodeError as e:
                yield no, DatasetError(path, no, f"invalid JSON: {broken_at(e)}")
            except RecursionError:  # `[[[[...` thousands deep: no record is, and Python's parser cannot follow
                yield no, DatasetError(path, no, "invalid JSON: nested too deep to read (thousands of [ or {)")
            except DuplicateKeyError as e:
                yield no, DatasetError(path, no, f"invalid JSON: {e}")


def iter_dataset(path: str | Path) -> Iterator[Row]:
    """Stream a JSONL dataset, yielding every line's sample or its error (blank lines skipped); DatasetError for the
    whole file, naming what it is and the command that reads it, when it is a file of another kind."""
    first = True
    for no, obj in iter_json_lines(path):
        try:
            row = Row(no, None, obj) if isinstance(obj, DatasetError) else Row(no, parse_sample(obj, path, no), None)
        except DatasetError as e:
            row = Row(no, None, e)
        if first and row.error is not None and (kind := another_kind(Path(path), obj)) is not None:
            raise DatasetError(path, 0, f"{kind[0]}, not a JSONL dataset (a photo per line): {kind[1]}")
        first = False
        yield row


# A JSON document larger than this given as a dataset is not read whole just to say what it is.
_MAX_SNIFFED_BYTES = 64 * 2**20
_WHOLE_FILE = object()


def another_kind(path: Path, first: Any = _WHOLE_FILE) -> tuple[str, str] | None:
    """What a file given as a dataset or a COCO file is, and what to do with it: `(what, advice)` for a COCO file, a
    photo's annotation as the platform exports it, or predictions; None when it is none of them. `first`: its first
    line, parsed, or the DatasetError of a line that is no JSON (a document written over several lines); the whole
    file when not given."""
    # Each was told as a missing 'images' key, or invalid JSON at line 1, line by line: never what the file is.
    if first is _WHOLE_FILE or isinstance(first, DatasetError):
        try:
            if path.stat().st_size > _MAX_SNIFFED_BYTES:
                return None
            first = parse_json(path.read_bytes())
        except (OSError, ValueError, RecursionError):
            return None
    if not isinstance(first, dict):
        return None
    if isinstance(first.get("images"), list) and isinstance(first.get("annotations"), list):
        return "a COCO detection file", f"`bbuvl data import-coco {shell_word(path)} IMAGES_DIR OUT` turns it into a dataset"
    if "markResult" in first or "dataList" in first:
        return ("one photo's annotation as the annotation platform exports it",
                "`bbuvl data convert SRC OUT` turns a folder of them, with their photos, into a dataset")
    if "image" in first and "images" not in first and {"raw", "parse_ok", "verdict"} & first.keys():
        return "predictions (what `bbuvl predict` writes)", "`bbuvl eval` scores them against a dataset"
    if {"query", "best_class"} <= first.keys():
        return ("few-shot answers (what `bbuvl fewshot classify` writes)",
                "give the dataset they answered, or label predictions with `bbuvl fewshot label`")
    if "labels" in first and (isinstance(first.get("levels"), dict) or isinstance(first.get("images"), dict)):
        return ("a dataset's counts (labels.json, summary.json or `bbuvl data stats --json`)",
                "give the dataset's train.jsonl or val.jsonl, or its folder")
    return None


def read_lines(path: str | Path) -> list[tuple[int, Sample]]:
    """Every sample of a JSONL dataset with its line number; the first bad line raises its DatasetError."""
    out = []
    for row in iter_dataset(path):
        if row.error is not None:
            raise row.error
        out.append((row.line, row.sample))
    return out


def once_each(rows: list[tuple[int, Sample]], dataset: str | Path) -> list[tuple[int, Sample]]:
    """`rows` (line, sample) when no photo is the student of two lines; DatasetError naming both lines otherwise: a
    split could draw one copy for train and the other for val, a teacher pool show it twice, and its boxes count
    twice wherever they land."""
    one_line_per_photo((Path(dataset), line, sample.student) for line, sample in rows)
    return rows


def one_line_per_photo(rows: Iterable[tuple[Path, int, ImageRecord]], by_content: bool = False) -> None:
    """DatasetError naming both places when one photo is the record of two lines, in one file or across files (a
    dataset folder's train and val); `by_content`: also two names of one file's bytes or of its image data (a JPEG copy
    whose EXIF a tool rewrote), as `bbuvl data check` finds them.

    A command that silently kept one copy would drop a line the user wrote; one that kept both would count its boxes
    twice, or score a training photo as validation.
    """
    first: dict[str, tuple[Path, int, str]] = {}
    for path, line, record in rows:
        photo = os.path.normpath(resolve_image(path, record.image))  # a photo is its path, links not resolved
        keys = [photo]
        if by_content and os.path.isfile(photo):  # a missing photo is named by the command that reads it
            whole, data = photo_digests(photo)
            keys += [f"sha256:{whole}", f"data:{data}"]
        for key in keys:
            seen = first.setdefault(key, (path, line, record.image))
            if seen[:2] == (path, line):
                continue
            how = ("the same photo as" if key == photo else f"the same bytes as {seen[2]}," if key.startswith("sha256:")
                   else f"the same compressed pixels as {seen[2]}, only its EXIF differs,")
            if seen[0] == path:
                raise DatasetError(path, line, f"image {record.image}: {how} line {seen[1]}; keep one line per photo "
                                   "(bbuvl data check lists every repeat)")
            raise DatasetError(path, line, f"image {record.image}: {how} {seen[0]} line {seen[1]}: a photo in two of "
                               "the dataset's files is trained on and scored as validation at once; keep it in one "
                               "(bbuvl data check lists every repeat)")


def lines_kind(path: str | Path) -> tuple[str, str] | None:
    """What a file of JSON lines is, and what to do with it, when its first line is a dataset's photo or a prediction
    (for a command that reads one JSON document, given such a file); None otherwise."""
    try:
        no, first = next(iter_json_lines(path), (0, None))
        if (kind := another_kind(Path(path), first)) is not None:
            return kind
        parse_sample(first, path, no)
    except (DatasetError, ValueError, OSError):
        return None
    return ("a JSONL dataset (a photo per line)",
            "every bbuvl command reads it as it is, and `bbuvl data export-coco` writes it as one")


def read_dataset(path: str | Path, skip_invalid: bool = False) -> list[Sample]:
    """Read a whole JSONL dataset; the first bad line raises unless `skip_invalid`."""
    out = []
    for row in iter_dataset(path):
        if row.error is not None:
            if not skip_invalid:
                raise row.error
            continue
        out.append(row.sample)
    return out


def read_records(path: str | Path, skip_invalid: bool = False) -> list[ImageRecord]:
    """Read a dataset of plain photos (the student record of each sample)."""
    return [s.student for s in read_dataset(path, skip_invalid)]


def require_photos(items: list[Any], path: str | Path) -> list[Any]:
    """`items` read from `path`, or ValueError when there are none: a command given no photos has nothing to do,
    and an empty result would look like success."""
    if not items:
        raise ValueError(f"{path}: no photos: the file is empty or holds only blank lines")
    return items


def dump_record(record: ImageRecord | Sample) -> str:
    """One JSONL line (no trailing newline), without empty optional fields."""
    data = record.model_dump(exclude_none=True)
    line = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if not_text(line) is not None:  # a path made from one the user typed (a folder named in GBK bytes), relocated
        records = [record.student, *record.teachers] if isinstance(record, Sample) else [record]
        texts = [t for r in records for t in (*r.images, r.id, r.source, *(o.desc for o in r.objects)) if t]
        raise ValueError(f"in a record, {next((p for p in map(not_text, texts) if p), not_text(line))}")
    return line


def write_dataset(path: str | Path, records: Iterable[ImageRecord | Sample]) -> int:
    """Write records atomically (bbuvl/atomic.py: a link is written through, a full disk keeps the old file) and
    return how many were written; ValueError naming `path` for a record no UTF-8 line can hold."""
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for r in records:
            try:
                line = dump_record(r)
            except ValueError as e:
                raise ValueError(f"{path}: not written: {e}") from None
            fh.write(line + "\n")
            n += 1
    return n


# What `data tile` (tiling.py's tile_record) appends to a photo's id, once per tiling.
_TILE_ID = re.compile(r"(?:@\d+,\d+,\d+x\d+)+\Z")


def tile_origin(record: ImageRecord) -> str | None:
    """The id of the photo a tile (or a tile of a tile) was cut from, the same for every tile of it and for the whole
    photo kept beside them; None for a record no tiling wrote."""
    if record.id is None or record.source is None or (m := _TILE_ID.search(record.id)) is None:
        return None
    return record.id[: m.start()]


def resolve_image(dataset_path: str | Path, image: str) -> Path:
    """Absolute path of an image named in a dataset (relative to the JSONL file's folder), found as NFC or NFD, and
    with `\\` read as `/` when only that spelling exists (a dataset written on Windows, as COCO file names are read)."""
    return image_in(real_path(dataset_path).parent, image)


def image_in(folder: Path, image: str) -> Path:
    """The file an image name stands for, relative to `folder` (a dataset's), as `resolve_image` finds it."""
    p = Path(image)
    found = find_file(p if p.is_absolute() else folder / p)
    if "\\" in image and not found.exists():
        other = image_in(folder, image.replace("\\", "/"))
        return other if other.exists() else found
    return found
