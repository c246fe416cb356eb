"""Vendor export -> canonical dataset folder (`bbuvl data convert`).

Each photo is one JSON file plus one image with the same stem, anywhere under the source folder (in one folder,
where photos of several folders share a stem: `site1/IMG_0001` and `site2/IMG_0001`; spelt exactly alike, where
`café` composed and decomposed both name photos; one letter case apart, `img_0001.json` beside `IMG_0001.JPG`, as
Windows and macOS name one file, where no other file of the name is left unpaired).
A photo goes through: parse the JSON (data/vendor.py), decode the image upright (data/images.py),
decide which grid the annotator drew on (coords.resolve_vendor_frame), map every box to the stored
image, map and validate every label, then store the image as `images/<stem>.jpg`. Whatever cannot be
used becomes one line of `errors.jsonl`; nothing stops the other photos, but a photo that cannot be written (a full
disk) stops the command, being no fault of the input. Photos are converted in worker processes and gathered in input
order, so the output does not depend on the worker count.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import Counter
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from PIL import Image

from bbuvl.atomic import WriteFailed, atomic_path, remove_path, save_atomic, sync_files, write_text_atomic
from bbuvl.data.check import duplicate_pairs, folded_copy
from bbuvl.data.coords import (
    ROTATING_ORIENTATIONS,
    CoordinateContract,
    Size,
    VendorFrame,
    aspect_problem,
    box_is_degenerate,
    clip_box,
    oriented_size,
    resolve_vendor_frame,
    scale_box,
    vendor_to_stored,
)
from bbuvl.data.images import IMAGE_SUFFIXES, file_digest, load_image, photo_digests, starts_as_jpeg
from bbuvl.data.input_paths import OutsideFolderError, file_inside, require_folder
from bbuvl.data.jsonfile import DuplicateKeyError, json_problem, parse_json
from bbuvl.data.labels import SEP, Hierarchy, TokenMap
from bbuvl.data.layout import DATASET_FILES, ERRORS, IMAGES, SUMMARY, TRAIN, write_dataset_folder, write_json
from bbuvl.data.library_outputs import holding_outputs
from bbuvl.data.names import NameBook, fit_name, portable_path
from bbuvl.data.near_copies import near_copy_entries, print_of
from bbuvl.data.schema import ImageRecord, ObjectAnn, sort_objects
from bbuvl.data.split import groups_in, split_by_origin
from bbuvl.data.text import (file_name_key, gbk_hint, name_as_text, names_apart, not_text, quote_name, shell_word,
                             show_text)
from bbuvl.data.vendor import VendorObject, parse_vendor
from bbuvl.data.workers import bound_workers, completed, process_pool, stopping, worker_deaths
from bbuvl.paths import real_path

if TYPE_CHECKING:
    import numpy as np

JPEG_QUALITY = 95
# A box may overshoot the image by this much (annotation tools let the cursor run past the edge);
# more than that means the coordinates are wrong, not sloppy.
CLIP_TOL_FRACTION = 0.02
CLIP_TOL_PIXELS = 4.0
# One photo's annotation file: ten thousand boxes take about 3 MB. A file past this is no annotation (a dump, a
# video's metadata named .json), and reading it whole in each worker could take the memory of the whole run.
MAX_VENDOR_JSON_BYTES = 64 * 2**20


@dataclass
class ConvertOptions:
    """Everything `bbuvl data convert` can be told."""

    frame: CoordinateContract | None = None  # set: pre-scale images to this model frame, so frame equals file
    val_ratio: float = 0.1
    teachers: int = 10
    seed: int = 42
    lang: str = "zh"  # "zh": canonical Chinese labels; "en": the hierarchy's English glosses
    workers: int = 1
    token_map: Path | None = None  # None: the shipped token map
    hierarchy: Path | None = None  # None: the shipped hierarchy


@dataclass(frozen=True)
class Pair:
    """The files of one photo, found by stem; `problem` says why they cannot be converted."""

    stem: str
    json: Path | None
    image: Path | None
    problem: str | None = None
    stored: str = ""  # the file name under images/, one file on every system (data/names.py)
    key: str = ""  # the record's id when photos of one stem lie in several folders: the JSON's path, no suffix

    @property
    def id(self) -> str:
        """The record's id: the stem, or the JSON's path without its suffix when the stem names several photos."""
        return self.key or self.stem


@dataclass
class PhotoResult:
    """What converting one photo gave: the record (None when the photo failed) and its bookkeeping."""

    record: ImageRecord | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    objects_found: int = 0
    objects_invalid: int = 0
    duplicates: int = 0
    clipped: int = 0
    categories: list[str] = field(default_factory=list)  # category of each kept object, in the output language
    orientation: int = 1
    frame: str | None = None  # "raw" or "oriented": the grid the annotator drew on
    ambiguous: bool = False  # the sizes could not tell raw from displayed; displayed was assumed
    rescaled: bool = False  # the annotator saw the photo at another resolution
    digest: str | None = None  # SHA-256 of the stored image: one photo under two names is stored twice alike
    source_data: str | None = None  # of the photo's image data as exported (images.photo_digests): its EXIF aside
    folded: str | None = None  # "same_boxes" or "other_boxes": a photo converted already, under another name
    folded_objects: int = 0  # the objects it held, left with it
    photo: str = ""  # its image file, relative to the export
    near_print: np.ndarray | None = None  # its upright pixels seen small (data/near_copies.py): a re-encoded copy's


@dataclass(frozen=True)
class _Context:
    """What every worker needs; small and picklable."""

    src: Path
    images_dir: Path
    token_map: TokenMap
    hierarchy: Hierarchy
    contract: CoordinateContract | None  # set when images are pre-scaled to the model frame
    lang: str


# --- finding the photos ------------------------------------------------------------------------


def find_pairs(src: Path, exclude: Path | None = None, settings: Iterable[Path | None] = ()) -> list[Pair]:
    """Pair every JSON under `src` with the image of the same stem (alike in NFC, spelt exactly alike first:
    `_pairs_of_one_stem`; `IMG_0.jpg.json` names the `IMG_0.jpg` beside it), sorted by stem.

    Hidden files, everything under `exclude` and the `settings` files (--token-map, --hierarchy) are skipped; a link
    to a file outside `src` is never read.
    Each convertible pair gets its own stored name: `A` and `a` are one file on macOS and Windows, `é` composed and
    decomposed on macOS.
    """
    src = real_path(src)
    exclude = real_path(exclude) if exclude else None
    # A hierarchy or token map kept beside the export was read as a photo's annotation: "no image named 'hierarchy'"
    skipped = {real_path(s) for s in settings if s is not None}
    jsons: dict[str, list[Path]] = {}
    images: dict[str, list[Path]] = {}
    outside: dict[str, str] = {}  # stem -> why one of its files cannot be read
    others: dict[str, list[Path]] = {}  # stem -> its files of no suffix read here (a HEIC, a GIF)
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        # Hidden entries are OS and tool metadata (`.DS_Store`, `._IMG_1.jpg`, `.git`), never photos.
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if exclude is not None and path.is_relative_to(exclude) or skipped and real_path(path) in skipped:
            continue
        suffix, stem = path.suffix.lower(), file_name_key(_own_stem(path))
        if suffix == ".json":
            jsons.setdefault(stem, []).append(path)
        elif suffix in IMAGE_SUFFIXES:
            images.setdefault(stem, []).append(path)
        else:
            others.setdefault(stem, []).append(path)
            continue
        if (problem := not_text(rel.as_posix())) is not None:  # no dataset line or errors.jsonl could hold its name
            outside[stem] = problem
            continue
        try:
            file_inside(path, src)
        except OutsideFolderError:
            outside[stem] = (f"{rel.as_posix()} is a link to {real_path(path)}, outside the source folder; "
                             f"copy the file into {src} to convert it")
    _join_letter_cases(jsons, images, outside)
    pairs = []
    for stem in sorted(jsons.keys() | images.keys()):
        js, ims = jsons.get(stem, []), images.get(stem, [])
        if stem in outside:
            pairs.append(Pair(stem, js[0] if js else None, ims[0] if ims else None, outside[stem]))
        elif len(js) == 1 and len(ims) == 1:
            pairs.append(Pair(stem, js[0], ims[0]))
        elif len(js) > 1 or len(ims) > 1:
            pairs += _pairs_of_one_stem(stem, js, ims, src)
        elif not ims:
            suffixes = "/".join(sorted(IMAGE_SUFFIXES))
            # The photo may be right beside it in a format no reader here opens: say so, not that it is missing.
            there = ", ".join(_rel(p, src) for p in others.get(stem, []))
            found = f"; {there} has none of those suffixes: convert it to JPEG or PNG" if there else ""
            why = _coco_file(js[0]) or (f"no image named '{stem}' ({suffixes}) anywhere under {src}{found}"
                                        f"{_other_cases(stem, images, src)}")
            pairs.append(Pair(stem, js[0], None, why))
        else:
            pairs.append(Pair(stem, None, ims[0], f"image has no annotation JSON named '{stem}.json'"))
    book = NameBook()
    return [replace(p, stored=book.name(fit_name(portable_path(f"{p.stem}.jpg"), p.id), p.id)) if p.problem is None
            else p for p in pairs]


def _coco_file(path: Path) -> str | None:
    """Why a JSON with no photo of its name is a COCO file put among the vendor annotations (None when it is not one):
    `data convert` reads one annotation per photo, `data import-coco` reads COCO."""
    try:
        if path.stat().st_size > MAX_VENDOR_JSON_BYTES:  # no one photo's annotation is this large, a COCO file may be
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list)):
        return None
    return (f"a COCO detection file ({len(data['images'])} images, {len(data['annotations'])} annotations), not one "
            f"photo's vendor annotation: import it with `bbuvl data import-coco {shell_word(path)} IMAGES_DIR OUT`")


def _own_stem(path: Path) -> str:
    """A file's stem as spelt on disk; an annotation `IMG_0.jpg.json` beside `IMG_0.jpg` (or `IMG_0.JPG`, one file
    where the export was made) has the photo's."""
    if path.suffix.lower() == ".json" and Path(path.stem).suffix.lower() in IMAGE_SUFFIXES and (
            (path.parent / path.stem).is_file() or _in_other_case(path.parent, path.stem)):
        # As several labelling tools name it. Keyed by its own stem, it was "no image named 'IMG_0.jpg'" with the photo
        # right beside it.
        return Path(path.stem).stem
    return path.stem


def _in_other_case(folder: Path, name: str) -> bool:
    """Whether `folder` holds a file named `name` in other letter case: one name on Windows and macOS, where exports
    are made (a camera's `IMG_0.JPG` annotated as `IMG_0.jpg.json`)."""
    try:
        return any((folder / other).is_file() for other in _names_by_case(str(folder), os.stat(folder).st_mtime_ns).get(
            name.casefold(), ()))
    except OSError:
        return False


@lru_cache(maxsize=64)
def _names_by_case(folder: str, changed_ns: int) -> dict[str, list[str]]:
    """The names in `folder` by their casefold, listed once for an export of thousands of annotations named after
    their photos; `changed_ns`, the folder's modification time, lists it again once a name is added or removed."""
    names: dict[str, list[str]] = {}
    for name in sorted(os.listdir(folder)):
        names.setdefault(name.casefold(), []).append(name)
    return names


def _join_letter_cases(jsons: dict[str, list[Path]], images: dict[str, list[Path]], outside: dict[str, str]) -> None:
    """Key a stem's JSON files under its images' stem where the two are spelt one letter case apart and are each the
    only unpaired stem of that spelling (`img_0001.json` beside `IMG_0001.JPG`): on Windows and macOS, where exports are
    made, they are one name, and each was an error of its own ("no image named 'img_0001'") with the photo beside it.
    Stems whose JSON and image are both there (`A` and `a`, two photos on Linux) stay apart; so do several unpaired
    spellings of one name, which photo is whose being a guess."""
    by_case: dict[str, list[str]] = {}
    for stem in jsons.keys() | images.keys():
        by_case.setdefault(stem.casefold(), []).append(stem)
    for stems in by_case.values():
        alone_json = [s for s in stems if s not in images]
        alone_image = [s for s in stems if s not in jsons]
        if len(alone_json) == len(alone_image) == 1 and not outside.keys() & {alone_json[0], alone_image[0]}:
            jsons[alone_image[0]] = jsons.pop(alone_json[0])


def _other_cases(stem: str, images: dict[str, list[Path]], src: Path) -> str:
    """A note naming the images whose stem is `stem` in other letter case ('' when none is), for a JSON left without
    its image: Windows and macOS take them for one name."""
    found = sorted(_rel(p, src) for other, paths in images.items() if other != stem
                   and other.casefold() == stem.casefold() for p in paths)
    if not found:
        return ""
    named = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
    return (f"; {named} {'is' if len(found) == 1 else 'are'} named so in other letter case, one name on Windows and "
            "macOS, but which photo is this one's cannot be told: rename the JSON as its photo")


# How sure a pairing of a stem's JSON files and images is, surest first: beside each other and spelt exactly alike,
# beside each other, spelt exactly alike anywhere, anywhere. A stem is keyed in NFC (macOS names `é` decomposed where
# the annotation tool composed it), but a Linux folder may hold `café` composed and decomposed, two photos whose
# files pair exactly: keyed only in NFC, all four were "ambiguous" and both photos lost.
_PAIRING_LEVELS: tuple[Callable[[Path], object], ...] = (
    lambda p: (p.parent, _own_stem(p)), lambda p: p.parent, _own_stem, lambda p: "")


def _pairs_of_one_stem(stem: str, jsons: list[Path], images: list[Path], src: Path) -> list[Pair]:
    """The photos of a stem that several JSON files or images have: a JSON and an image that are alone of the stem at
    a level of `_PAIRING_LEVELS` are one photo (cameras number alike: `IMG_0001` of two sites, each beside its JSON,
    are two photos). Any other JSON left has no image, or any image no JSON, each an error of its own; JSON files and
    images both left, which is whose is a guess: an error naming them all for each photo they hold."""
    found, left_json, left_image = [], list(jsons), list(images)
    for level in _PAIRING_LEVELS:
        found += _pair_alone(left_json, left_image, level)
    # The photos paired in their own folders are kept whatever is left: one photo not annotated yet, in a third
    # folder, lost the two sites' photos of its name with it, and the summary counted one photo failed.
    pairs = [Pair(stem, j, i, key=_rel(j, src).removesuffix(j.suffix)) for j, i in found]
    if left_json and left_image:
        names = ", ".join(names_apart(*(_rel(p, src) for p in left_json + left_image)))
        why = (f"ambiguous stem '{stem}': {names}; rename so each photo has exactly one JSON and one image with its "
               "name (in its folder, where several photos share a name)")
        # One error a photo, as many as files of the more numerous kind: all were counted one photo failed.
        return pairs + [Pair(stem, j, i, why) for j, i in zip_longest(left_json, left_image)]
    pairs += [Pair(stem, None, image, f"image has no annotation JSON named {quote_name(_own_stem(image) + '.json')} in "
                   "its folder") for image in left_image]
    pairs += [Pair(stem, js, None, f"no image named {quote_name(_own_stem(js))} in its folder, where several folders "
                   "hold files of that name and each JSON is paired with the image beside it") for js in left_json]
    return pairs


def _pair_alone(jsons: list[Path], images: list[Path], level: Callable[[Path], object]) -> list[tuple[Path, Path]]:
    """The JSON and image pairs alone of their key at `level`, taken out of `jsons` and `images`."""
    by_key: dict[object, tuple[list[Path], list[Path]]] = {}
    for kind, paths in enumerate((jsons, images)):
        for path in paths:
            by_key.setdefault(level(path), ([], []))[kind].append(path)
    found = [(js[0], ims[0]) for js, ims in by_key.values() if len(js) == len(ims) == 1]
    for js, im in found:
        jsons.remove(js)
        images.remove(im)
    return found


def _rel(path: Path, src: Path) -> str:
    try:
        return path.relative_to(src).as_posix()
    except ValueError:
        return str(path)


# --- one photo ---------------------------------------------------------------------------------


def convert_photo(pair: Pair, ctx: _Context) -> PhotoResult:
    """Convert one photo: its record (image written to `images/<stem>.jpg`) or the reasons it failed."""
    file = name_as_text(_rel(pair.json or pair.image, ctx.src))  # type: ignore[arg-type]
    if pair.problem is not None:
        return PhotoResult(None, [_error(file, None, pair.problem)])
    result = PhotoResult(None)
    try:
        _convert_into(pair, ctx, file, result)
    except WriteFailed:
        # Writing the dataset failed (a full disk, a quota, a file-size limit), not reading the photo: every photo
        # after it would fail alike, and the photo was listed in errors.jsonl as bad input, the run said ok and exit 0.
        # The command stops naming the file and why; its re-run converts the photos again (docs/outputs.md).
        raise
    except (ValueError, OSError, RecursionError) as e:  # RecursionError: JSON nested thousands deep
        result.record = None
        result.errors.append(_error(file, None, _reason(e, pair, ctx.src)))
    return result


def _convert_into(pair: Pair, ctx: _Context, file: str, result: PhotoResult) -> None:
    """The body of `convert_photo`; raises for a problem that sinks the whole photo."""
    assert pair.json is not None and pair.image is not None
    if (size := pair.json.stat().st_size) > MAX_VENDOR_JSON_BYTES:
        raise ValueError(f"{size:,} bytes, more than one photo's annotations ever take ({MAX_VENDOR_JSON_BYTES:,}); "
                         "is this another kind of file named .json?")
    data = parse_json(pair.json.read_bytes())  # bytes: UTF-8/16/32 and a BOM detected
    vendor = parse_vendor(data, file)
    result.objects_found = len(vendor.objects) + len(vendor.problems)
    for p in vendor.problems:
        result.errors.append(_error(file, p.index, p.reason, p.label))
    result.objects_invalid = len(vendor.problems)

    image_name = _rel(pair.image, ctx.src)
    try:
        loaded = load_image(pair.image)
    except Image.DecompressionBombError as e:  # Pillow's guard against pixel bombs is no ValueError
        raise ValueError(f"{image_name}: image too large: {e}") from None
    raw, orientation = loaded.raw_size, loaded.orientation
    stored = oriented_size(raw, orientation)
    if (why := aspect_problem(stored)) is not None:  # written, `data check`, `data stats` and training refused it
        raise ValueError(f"{image_name}: {why}")
    try:
        frame = (resolve_vendor_frame(vendor.size, raw, orientation) if vendor.size is not None else
                 _frame_without_size([o.box for o in vendor.objects], raw, orientation))
    except ValueError as e:
        raise ValueError(f"{image_name}: {e}") from None
    result.orientation, result.frame = orientation, frame.annotated_on
    result.ambiguous = frame.ambiguous
    result.rescaled = any(abs(s - 1.0) > 1e-6 for s in frame.scale)
    final = ctx.contract.model_size(stored) if ctx.contract else stored
    if final == stored and loaded.image.size != stored and not _copied_as_is(pair.image, loaded.mode, orientation):
        # A JPEG past Pillow's pixel limit, decoded at a reduced scale (data/images.py), that must be encoded again is
        # written at that scale, its boxes scaled as --resize scales them: enlarged back, it would hold no more detail
        final = loaded.image.size

    objects: list[ObjectAnn] = []
    sources: list[VendorObject] = []  # the platform's object each kept one came from
    seen: set[tuple[tuple[float, ...], str]] = set()
    for obj in vendor.objects:
        try:
            label, category = _label(obj, ctx)
            box = vendor_to_stored(obj.box, frame, raw, orientation)
            box, clipped = _fit_box(box, stored, obj.box)
            if final != stored:
                box = scale_box(box, stored, final)
            if box_is_degenerate(box):
                # "after clipping" was said of a point or a line drawn as a feature, which nothing clipped
                steps = [s for s, done in (("clipped to the image", clipped),
                                           (f"scaled to the model frame's {final[0]}x{final[1]}", final != stored)) if done]
                how = " once " + " and ".join(steps) if steps else _why_thin(obj.box)
                raise _ObjectProblem(f"box {_fmt(obj.box)} is degenerate ({_fmt_size(box)} px){how}")
        except _ObjectProblem as e:
            result.errors.append(_error(file, obj.index, e.reason, obj.label))
            result.objects_invalid += 1
            continue
        box = [round(v, 2) for v in box]
        key = (tuple(box), label)
        if key in seen:  # the platform sometimes saves a box twice; a second copy teaches nothing
            result.duplicates += 1
            continue
        seen.add(key)
        result.clipped += clipped
        result.categories.append(category)
        objects.append(ObjectAnn(bbox_2d=box, desc=label, extra=obj.extra or None))
        sources.append(obj)
    # What `data check` and training refuse as one object annotated twice (one box with two labels, one label on
    # nearly the same box) was written, so the dataset convert made failed the next command: the later is dropped.
    dropped = set()
    for i, j, what in duplicate_pairs(objects):
        if i in dropped or j in dropped:
            continue
        dropped.add(j)
        result.errors.append(_error(file, sources[j].index, f"{what} (objects {sources[i].index} and "
                                    f"{sources[j].index}): one object annotated twice; object {sources[i].index} is "
                                    "kept (fix the annotation if this one is right)", sources[j].label))
        result.duplicates += 1
    result.categories = [c for k, c in enumerate(result.categories) if k not in dropped] if dropped else result.categories
    objects = [o for k, o in enumerate(objects) if k not in dropped]

    if result.objects_found and not objects:
        # A photo whose objects all failed would teach "nothing here"; it is dropped, not kept empty.
        raise ValueError(f"none of its {result.objects_found} objects could be used")
    name = _store_image(loaded.image, pair.image, ctx.images_dir / pair.stored, final, loaded.mode, orientation, stored)
    result.digest, result.source_data = file_digest(ctx.images_dir / name), photo_digests(pair.image)[1]
    result.photo, result.near_print = image_name, print_of(loaded.image)
    result.record = ImageRecord(
        images=[f"{IMAGES}/{name}"], width=final[0], height=final[1],
        objects=sort_objects(objects), id=pair.id, source=file,
    )


def _why_thin(box: list[float]) -> str:
    """Why a box as written is thinner than a pixel: a point or a line drawn as a feature, or fractions of the photo's
    sides (a tool that writes 0-1), not its pixels; '' for a box merely thin."""
    if box[0] == box[2] or box[1] == box[3]:
        return " (a point or a line, not a box)"
    if all(0 <= v <= 1 for v in box):
        return " (its coordinates lie within 0-1: fractions of the photo's sides? The platform's boxes are in pixels)"
    return ""


def _frame_without_size(boxes: list[list[float]], raw: Size, orientation: int) -> VendorFrame:
    """The grid boxes were drawn on when the annotation gives no size (no `info`): the photo as viewers show it, unless
    it turns (EXIF 5-8, not square) and its boxes lie within the file's own grid alone (a tool that drew on the pixels as
    stored: read as shown, its boxes past the turned photo's edge were dropped and the others kept in the wrong place).
    Boxes within both grids cannot tell them apart: displayed is assumed, and counted so, as for a square photo."""
    stored = oriented_size(raw, orientation)
    shown = resolve_vendor_frame(stored, raw, orientation)
    if orientation not in ROTATING_ORIENTATIONS or raw[0] == raw[1] or not boxes:
        return shown
    on_raw, on_shown = _all_within(boxes, raw), _all_within(boxes, stored)
    if on_raw and not on_shown:
        return resolve_vendor_frame(raw, raw, orientation)
    return replace(shown, ambiguous=on_raw)


def _all_within(boxes: list[list[float]], size: Size) -> bool:
    """Whether every box lies within an image of `size`, past its edges by no more than `_fit_box` clips."""
    w, h = size
    tx, ty = max(CLIP_TOL_PIXELS, CLIP_TOL_FRACTION * w), max(CLIP_TOL_PIXELS, CLIP_TOL_FRACTION * h)
    return all(-tx <= b[0] and -ty <= b[1] and b[2] <= w + tx and b[3] <= h + ty for b in boxes)


class _ObjectProblem(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _label(obj: VendorObject, ctx: _Context) -> tuple[str, str]:
    """The object's label and category in the output language; the FULL path (state included) is validated."""
    mapped = ctx.token_map.map_path(obj.parts)
    # The hierarchy's spelling, however it was typed; or the label whose English gloss the platform wrote (as `data
    # convert --lang en` writes and `data import-coco` reads it), looked up as written too: the token map, made for the
    # platform's tokens, turned some of its parts ('air baffle/已安装'), and every such object was dropped.
    canonical = (ctx.hierarchy.canonical(mapped) or ctx.hierarchy.from_english(obj.label)
                 or ctx.hierarchy.from_english(mapped))
    if canonical is None:
        shown = "" if mapped == obj.label else f" (mapped to {show_text(mapped)})"
        raise _ObjectProblem(
            f"label {show_text(obj.label)}{shown}: {ctx.hierarchy.problem(mapped)}; add its tokens to the token map "
            f"(--token-map) or the label to the hierarchy (--hierarchy)"
        )
    category = canonical.split(SEP)[0]
    if ctx.lang == "en":
        # The category's own gloss: the hierarchy's glosses hold no '/' (data/labels.py), so the label splits alike.
        return ctx.hierarchy.english(canonical), ctx.hierarchy.categories[category].gloss
    return canonical, category


def _fit_box(box: list[float], size: Size, written: list[float]) -> tuple[list[float], int]:
    """Clip a box that overshoots the image a little; returns the box and 1 when it was clipped.

    `written` is the box as the vendor file has it, quoted in errors so the user can find it there.
    """
    w, h = size
    if box[2] <= 0 or box[3] <= 0 or box[0] >= w or box[1] >= h:
        raise _ObjectProblem(f"box {_fmt(written)} lies entirely outside the {w}x{h} image")
    over_x = max(-box[0], box[2] - w, 0.0)
    over_y = max(-box[1], box[3] - h, 0.0)
    tol_x = max(CLIP_TOL_PIXELS, CLIP_TOL_FRACTION * w)
    tol_y = max(CLIP_TOL_PIXELS, CLIP_TOL_FRACTION * h)
    for over, tol, axis in ((over_x, tol_x, "x"), (over_y, tol_y, "y")):
        if over > tol:
            raise _ObjectProblem(
                f"box {_fmt(written)} extends {_px(over)} px beyond the {w}x{h} image along {axis} "
                f"(tolerance {tol:.1f} px)"
            )
    if over_x > 0 or over_y > 0:
        return clip_box(box, size), 1
    return list(box), 0


def _store_image(image: Image.Image, source: Path, dest: Path, size: Size, mode: str, orientation: int,
                 stored: Size) -> str:
    """Write the upright RGB photo as JPEG at `size` (atomically: bbuvl/atomic.py); returns the file name. `stored`:
    the photo's upright size (`image` may be smaller: a JPEG past Pillow's pixel limit).

    Renamed into place without waiting for the disk: the dataset's files are written only after one `sync_files` of
    every photo stored (`_convert_held`), as `data import-coco` does (bench/import_syncs.py)."""
    if size == stored and _copied_as_is(source, mode, orientation):
        # Already an upright RGB JPEG: copying keeps it bit-exact (no second lossy encode) and is faster.
        with atomic_path(dest, sync=False) as tmp:
            shutil.copyfile(source, tmp)
    else:
        if size != image.size:
            # Bicubic, as Qwen's image processor resizes: the model sees the same pixels either way.
            image = image.resize(size, Image.Resampling.BICUBIC)
        # no exif= given, so no orientation tag is written
        save_atomic(dest, lambda fh: image.save(fh, "JPEG", quality=JPEG_QUALITY), sync=False)
    return dest.name


def _copied_as_is(source: Path, mode: str, orientation: int) -> bool:
    """Whether a photo is stored by copying its file, when it keeps its size: an upright RGB JPEG."""
    return orientation == 1 and mode == "RGB" and starts_as_jpeg(source)


def _reason(e: BaseException, pair: Pair, src: Path) -> str:
    """A photo-level error message that names the file it is about."""
    if isinstance(e, (json.JSONDecodeError, DuplicateKeyError)):
        return json_problem(e)
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text: {e.reason} at byte {e.start}{gbk_hint(e.object)}"
    if isinstance(e, RecursionError):
        return "not valid JSON: nested too deep to read (thousands of [ or {)"
    text = str(e)
    for path in (pair.json, pair.image):  # messages from other modules start with a full path; keep them short
        if path is not None:
            text = text.replace(str(path), _rel(path, src))
    return text


def _error(file: str, index: int | None, reason: str, label: str | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {"file": file, "object": index, "reason": reason}
    if label:
        line["label"] = name_as_text(label)  # half a character (a `\ud800` escape) could not be written at all
    return line


def _fmt(box: list[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def _px(value: float) -> str:
    """A distance in pixels to one decimal, or in three digits past any photo's side (`.1f` wrote 1e300 in 301)."""
    return f"{value:.1f}" if abs(value) < 1e6 else f"{value:.3g}"


def _fmt_size(box: list[float]) -> str:
    return f"{box[2] - box[0]:.1f}x{box[3] - box[1]:.1f}"


# --- many photos -------------------------------------------------------------------------------


def _convert_chunk(pairs: list[Pair], ctx: _Context) -> list[PhotoResult]:
    """Worker entry point: convert a run of photos in order, up to the pool's stop (then fewer: the command is
    stopping, and drops them)."""
    results: list[PhotoResult] = []
    with _reuse_image_memory():
        for pair in pairs:
            if stopping():
                break
            results.append(convert_photo(pair, ctx))
    return results


@contextmanager
def _reuse_image_memory(blocks: int = 8) -> Iterator[None]:
    # By default Pillow hands each photo's pixel memory back to the OS, so the next photo page-faults
    # it in again: measured as 40% of the CPU time on 1280x960 JPEGs. Keeping a few freed blocks
    # (at most 16 MB each) for reuse removes that; the old setting is restored, freeing them.
    old = Image.core.get_blocks_max()
    Image.core.set_blocks_max(max(old, blocks))
    try:
        yield
    finally:
        Image.core.set_blocks_max(old)


def _chunks(pairs: list[Pair], workers: int) -> list[list[Pair]]:
    # About four chunks per worker balance uneven photo sizes; at most 16 photos keeps the bar moving.
    size = max(1, min(16, math.ceil(len(pairs) / (max(workers, 1) * 4))))
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


@contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("converting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("convert", total=total)
        yield lambda n: bar.advance(task, n)


def convert_pairs(pairs: list[Pair], ctx: _Context, workers: int, progress: bool = False) -> list[PhotoResult]:
    """Convert every pair with `workers` processes, at most one per usable core (data/workers.py); results come back
    in the order of `pairs`."""
    workers = bound_workers(workers)
    chunks = _chunks(pairs, workers)
    if workers <= 1 or len(chunks) <= 1:
        results = []
        with _progress_bar(progress, len(pairs)) as advance:
            for chunk in chunks:
                results.extend(_convert_chunk(chunk, ctx))
                advance(len(chunk))
        return results
    with worker_deaths("converting photos", "run again with fewer --workers"), \
            process_pool(min(workers, len(chunks))) as pool:
        # With fork every worker starts at the first submit, so before the progress bar's thread exists.
        futures = {pool.submit(_convert_chunk, chunk, ctx): len(chunk) for chunk in chunks}
        with _progress_bar(progress, len(pairs)) as advance:
            for done in completed(list(futures)):
                # A failed write (a full disk) is raised as it comes: the pool then drops the photos not begun and its
                # workers stop at their next photo, where every chunk handed out was converted before it was said
                done.result()
                advance(futures[done])
        return [r for f in futures for r in f.result()]  # dicts keep submission order


def convert_dataset(src: Path, out: Path, opts: ConvertOptions, progress: bool = False) -> dict[str, Any]:
    """Convert a vendor export under `src` into a dataset folder `out`; returns the summary.

    Writes `out/images/<stem>.jpg`, train/val/teachers JSONL, labels.json, summary.json and
    errors.jsonl. When no photo could be converted only errors.jsonl and summary.json are written.

    Refused (OutputConflict) before anything is written when an output is the token map or hierarchy file (or holds
    it), or another process writes or reads one, or writes `src` (data/library_outputs.py); `out` may lie inside
    `src`, whose photos are never read back, but never be `src` nor hold it in its images/ (below).
    """
    src, out = Path(src), Path(out)
    with holding_outputs("data convert", {"token_map": opts.token_map, "hierarchy": opts.hierarchy},
                         [out / name for name in (*DATASET_FILES, ERRORS)], [out / IMAGES], read={"src": src}):
        return _convert_held(src, out, opts, progress)


def _convert_held(src: Path, out: Path, opts: ConvertOptions, progress: bool) -> dict[str, Any]:
    """`convert_dataset`, its outputs held."""
    require_folder(src, "the folder of the platform's export, its photos and their annotation JSON")
    if opts.lang not in ("zh", "en"):
        raise ValueError(f"--lang must be 'zh' or 'en', got '{opts.lang}'")
    if not 0 <= opts.val_ratio < 1:
        raise ValueError(f"--val-ratio must be in [0, 1), got {opts.val_ratio}")
    src_r, out_r = real_path(src), real_path(out)
    if src_r == out_r or src_r.is_relative_to(out_r / IMAGES):
        raise ValueError(f"{out}: writing the dataset there would overwrite the photos in {src}; choose another OUT")
    ctx = _Context(
        src=src_r,
        images_dir=out / IMAGES,
        token_map=TokenMap.load(opts.token_map),
        hierarchy=Hierarchy.load(opts.hierarchy),
        contract=opts.frame,
        lang=opts.lang,
    )
    # OUT inside SRC: never read our own images and JSON back (OUT above SRC needs no care).
    pairs = find_pairs(src, exclude=out if out_r.is_relative_to(src_r) else None,
                       settings=(opts.token_map, opts.hierarchy))
    refuse_a_dataset_folder(src, pairs)
    ctx.images_dir.mkdir(parents=True, exist_ok=True)
    results = convert_pairs(pairs, ctx, opts.workers, progress)
    _drop_repeated_photos(results, ctx.images_dir)

    converted = [r for r in results if r.record is not None]
    records = [r.record for r in converted if r.record is not None]
    # Every photo kept is on the disk before a file that names it is written.
    sync_files(out / record.image for record in records)
    # A copy a tool re-encoded has other bytes, so it was not folded above: both are kept (which is right is the
    # user's call), each later copy named in errors.jsonl, and all of one photo's copies go to one side of the split.
    together, near = near_copy_entries([r.photo for r in converted], [r.near_print for r in converted], "converted")
    errors = [e for r in results for e in r.errors] + [{**_error(e["file"], None, e["reason"]), **e} for e in near]
    summary = summarize(src, results, opts)
    summary["near_copies"] = {"photos": len(near), "groups": len(together)}
    summary["errors"] += len(near)
    train, val = split_by_origin(records, [None] * len(records), opts.val_ratio, opts.seed, together)
    if opts.val_ratio > 0 and len(records) >= 2 and not val:
        # Refused as `data split` refuses it (data/split.py): written anyway, its val.jsonl held no photo, the exit
        # status was 0 and only the summary's count said so; and any photo drawn for validation has its copies in train.
        shown = [r.photo for r in converted[:3]]
        raise ValueError(f"{src}: its {len(records)} photos converted are all one photo's near-copies (one view: "
                         f"{', '.join(shown)}{', ...' if len(records) > 3 else ''}), so no validation photo can be "
                         "drawn without its copies in train. Convert it with --val-ratio 0 and validate on photos "
                         "of other views")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / ERRORS, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors))
    if not records:
        write_json(out / SUMMARY, summary)
        with suppress(OSError):  # the folder made for photos, none of which converted
            ctx.images_dir.rmdir()
        return summary
    return write_dataset_folder(out, train, val, opts.teachers, opts.seed, summary,
                                copies=groups_in(train, records, together))


def refuse_a_dataset_folder(src: Path, pairs: list[Pair]) -> None:
    """ValueError when `src` is a dataset folder (a convert's or import-coco's output, its train.jsonl at the top) and
    holds no photo with its annotation JSON: every photo and labels.json were listed as errors, one by one, with
    nothing said of what the folder is."""
    if (src / TRAIN).is_file() and not any(p.json is not None and p.image is not None and p.problem is None
                                           for p in pairs):
        raise ValueError(f"{src}: a dataset folder (it holds {TRAIN}), converted already; give it to `bbuvl data "
                         "check`, `data split` or `data tile`, or to training as data.train. `data convert` reads the "
                         "platform's export: an annotation JSON beside each photo")


def _drop_repeated_photos(results: list[PhotoResult], images_dir: Path) -> None:
    """Keep the first of photos stored byte for byte alike (one photo exported under two names, `IMG_1.jpg` and
    `IMG_1 (1).jpg`), or exported with the same compressed pixels under other EXIF (a copy re-dated, or turned by its
    orientation tag): a photo twice counts its boxes twice, and the split could put one copy in train and the other in
    val. Each later copy becomes an error naming the first and whether their boxes agree
    (`check.folded_copy`; a copy shown turned otherwise has them in another frame), and its stored image is
    removed."""
    first: dict[str, PhotoResult] = {}  # stored digest, and source image data, -> the photo kept for it
    for r in results:
        if r.record is None or r.digest is None:
            continue
        kept = first.get(r.digest) or (first.get(r.source_data) if r.source_data else None)
        if kept is None:
            first[r.digest] = r
            if r.source_data:
                first[r.source_data] = r
            continue
        assert kept.record is not None
        remove_path(images_dir / Path(r.record.image).name)
        same_bytes = kept.digest == r.digest
        how = "the same bytes once stored" if same_bytes else "the same image data, only its EXIF differs"
        # Stored alike, the two are upright in one frame whatever their EXIF said.
        said, differs = folded_copy(f"its photo is the one of {kept.record.source} ({how}), kept as {kept.record.image}",
                                    "converted", kept.record.objects, r.record.objects, kept.record.source,
                                    None if same_bytes else (kept.orientation, r.orientation),
                                    "correct the annotation and convert again")
        r.errors.append({**_error(r.record.source or r.record.image, None, said), "same_as": kept.record.source})
        r.folded, r.folded_objects = "other_boxes" if differs else "same_boxes", len(r.record.objects)
        r.record = None


def summarize(src: Path, results: list[PhotoResult], opts: ConvertOptions) -> dict[str, Any]:
    """The conversion summary: photos, objects, labels per category, EXIF handling, clipping."""
    converted = [r for r in results if r.record is not None]
    kept = sum(len(r.record.objects) for r in converted)  # type: ignore[union-attr]
    found = sum(r.objects_found for r in results)
    invalid = sum(r.objects_invalid for r in results)
    duplicates = sum(r.duplicates for r in results)
    categories = Counter(c for r in converted for c in r.categories)
    rotated = [r for r in results if r.frame is not None and r.orientation in ROTATING_ORIENTATIONS]
    return {
        "source": str(src),
        "photos": {
            "found": len(results),
            "converted": len(converted),
            "failed": len(results) - len(converted) - sum(1 for r in results if r.folded),
            "folded": sum(1 for r in results if r.folded),
            "folded_with_other_boxes": sum(1 for r in results if r.folded == "other_boxes"),
            "with_dropped_objects": sum(1 for r in converted if r.objects_invalid),
        },
        # Not "objects": write_dataset_folder already reports the objects per split under that key.
        "annotations": {
            "found": found,
            "converted": kept,
            "dropped": invalid,
            "duplicates": duplicates,
            "in_folded_photos": sum(r.folded_objects for r in results),
            "lost_with_photo": found - kept - invalid - duplicates - sum(r.folded_objects for r in results),
            "clipped": sum(r.clipped for r in converted),
        },
        "categories": dict(sorted(categories.items(), key=lambda kv: (-kv[1], kv[0]))),
        "exif": {
            "rotated": len(rotated),
            "annotated_on_raw": sum(1 for r in rotated if r.frame == "raw"),
            "annotated_on_displayed": sum(1 for r in rotated if r.frame == "oriented"),
            "assumed_displayed": sum(1 for r in results if r.ambiguous),
        },
        "annotator_resolution_differs": sum(1 for r in results if r.frame is not None and r.rescaled),
        "resized_to_model_frame": opts.frame.to_dict() if opts.frame else None,
        "lang": opts.lang,
        "errors": sum(len(r.errors) for r in results),
    }
