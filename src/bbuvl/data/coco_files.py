"""COCO detection files <-> dataset folders: the file side of `data/coco.py`'s pure conversions."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import psutil

from bbuvl.atomic import write_text_atomic
from bbuvl.data.coco import OVERSHOOT_TOLERANCE, coco_to_records, id_key, photo_name, records_to_coco
from bbuvl.data.check import ImageInfo, folded_copy, probe_image
from bbuvl.data.coords import (ROTATING_ORIENTATIONS, VendorFrame, aspect_problem, box_inside, box_is_degenerate,
                               clip_box, resolve_vendor_frame, vendor_to_stored)
from bbuvl.data.images import ImageError, photo_digests
from bbuvl.data.jsonfile import is_json_number, read_json
from bbuvl.data.input_paths import OutsideFolderError, file_inside, find_file, require_folder
from bbuvl.data.labels import Hierarchy
from bbuvl.data.layout import DATASET_FILES, ERRORS, IMAGES, write_dataset_folder
from bbuvl.data.library_outputs import holding_outputs
from bbuvl.data.near_copies import near_copy_entries, photo_print
from bbuvl.data.placement import ImagePlacer, preferred_name
from bbuvl.data.schema import (ImageRecord, another_kind, lines_kind, once_each, read_lines, require_photos, resolve_image,
                               sort_objects, tile_origin)
from bbuvl.data.split import groups_in, split_by_origin
from bbuvl.data.teachers import photos_found
from bbuvl.data.text import file_name_key, not_text, show_text
from bbuvl.paths import real_path


# Reading a COCO file and building its records takes about ten times its size in memory (measured: 10.5 times for a
# 30 MB file of 20,000 photos and 200,000 boxes). A file past what is free was read anyway, and the run killed by the
# system with no word, or swapping for hours.
MEMORY_PER_BYTE = 10


def require_memory_for(path: Path, what: str) -> None:
    """ValueError naming `path` when reading it whole would take more memory than this machine has free; nothing when
    it is no regular file (reading it names what it is instead)."""
    if not path.is_file():
        return
    size = path.stat().st_size
    need, free = size * MEMORY_PER_BYTE, psutil.virtual_memory().available
    if need > free:
        raise ValueError(f"{path}: {size / 2**30:.2f} GiB of JSON takes about {need / 2**30:.1f} GiB of memory to read "
                         f"as a {what}, and {free / 2**30:.1f} GiB is available here; run it where more memory is "
                         "free, or split the file into COCO files of fewer images. Nothing was written")


@dataclass
class CocoImport:
    """What `import_coco` wrote: the dataset folder's summary, skipped entries and labels outside the hierarchy."""

    summary: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)
    unknown_labels: dict[str, int] = field(default_factory=dict)  # label -> objects
    outside: int = 0  # photos refused because they lie outside images_dir
    from_english: dict[str, tuple[str, int]] = field(default_factory=dict)  # name in English -> (label written, objects)


def import_coco(annotations: str | Path, images_dir: str | Path, out: str | Path, val_ratio: float = 0.1,
                num_teachers: int = 10, seed: int = 42, hierarchy: Hierarchy | None = None,
                link: bool = False, allow_outside: bool = False, allow_empty: bool = False) -> CocoImport:
    """Turn a COCO detection file into a dataset folder (images copied, or hard-linked, into `out`/images).

    Only photos inside `images_dir` are copied (unless `allow_outside`), and only files that decode as a
    supported photo format; any other entry is skipped into errors.jsonl, naming its image entry (`images[3]`). Labels
    the hierarchy knows are written in its spelling, however the COCO file typed them, and a category named by a
    label's English gloss (`BBU base-band unit/Huawei`, as `data convert --lang en` writes it) as that label: kept
    in English beside the Chinese of other files, the model would learn two names for one part. Names the hierarchy
    knows in neither language are kept as they are (`unknown_labels`). A file whose photos would all be imported without a
    box (no annotation, or none usable) is refused unless `allow_empty` (`refuse_all_empty`).

    Refused (OutputConflict) before anything is written when a file it writes, or `out`/images, is `annotations` or
    holds it, or lies inside `images_dir`, or another process writes or reads one (data/library_outputs.py).
    """
    out = Path(out)
    with holding_outputs("data import-coco", {"annotations": annotations, "images_dir": images_dir},
                         [out / name for name in (*DATASET_FILES, ERRORS)], [out / IMAGES]):
        return _import_held(annotations, images_dir, out, val_ratio, num_teachers, seed, hierarchy, link, allow_outside,
                            allow_empty)


def _import_held(annotations: str | Path, images_dir: str | Path, out: Path, val_ratio: float, num_teachers: int,
                 seed: int, hierarchy: Hierarchy | None, link: bool, allow_outside: bool, allow_empty: bool) -> CocoImport:
    """`import_coco`, its outputs held."""
    annotations, images_dir = Path(annotations), Path(images_dir)
    hierarchy = hierarchy or Hierarchy.load(None)
    require_folder(images_dir, "the folder the COCO file's file_name paths are relative to")
    require_memory_for(annotations, "COCO file")
    try:
        coco = read_json(annotations, "COCO file")
    except ValueError as e:  # "line 2: Extra data" said nothing of a dataset (or predictions) given as the COCO file
        kind = lines_kind(annotations)
        raise ValueError(f"{annotations}: {kind[0]}, not a COCO file: {kind[1]}") if kind else e from None
    if (kind := another_kind(annotations, coco)) is not None and "import-coco" not in kind[1]:
        raise ValueError(f"{annotations}: {kind[0]}, not a COCO file: {kind[1]}")
    if not isinstance(coco, dict):
        raise ValueError(f"{annotations}: not a COCO file (expected a JSON object with images/annotations/categories)")
    coco, sized, unsized, guessed = _sizes_from_photos(coco, images_dir, allow_outside)
    derived: list[str] = []  # the annotations whose box was read from their segmentation
    entries: list[str] = []  # each record's image entry, `images[3]`
    try:
        records, errors = coco_to_records(coco, images_dir, derived, entries)
    except ValueError as e:
        raise ValueError(f"{annotations}: {e}") from None
    except (AttributeError, TypeError, KeyError) as e:  # entries that are not objects, ids that are not hashable
        raise ValueError(f"{annotations}: not a COCO detection file ({type(e).__name__}: {e})") from e
    for e in errors:
        if e.get("entry") in unsized:
            e["reason"] = f"no width and height in the COCO file, and none from its photo: {unsized[e['entry']]}"
    if not allow_empty:
        refuse_all_empty(annotations, coco, records, errors)  # before any photo is copied
    kept, placer, outside, names = [], ImagePlacer(out, link), 0, _NamesUnder(images_dir)
    in_file = len(errors)  # the problems of the file's entries; those of its photos follow
    rotated, on_raw = 0, 0  # kept photos that viewers show turned (EXIF), and those of them drawn on the file's grid
    assumed, rescaled = 0, 0  # of them, those whose grid the sizes cannot tell; photos of another resolution
    imported: dict[str, tuple[ImageRecord, Path, str, int]] = {}  # image data -> entry, name, bytes, orientation
    folded, other_boxes = 0, 0  # entries of a photo imported already, and those of them whose boxes differ
    prints, photo_names = [], []  # each kept photo's pixels seen small (data/near_copies.py), its errors.jsonl name
    kept_entries: dict[str, str] = {}  # a kept photo's errors.jsonl name -> its image entry
    english: Counter[tuple[str, str]] = Counter()  # (name in English, label) -> objects
    for r, entry in zip(records, entries):
        src = Path(r.image)
        try:
            src = file_inside(src, images_dir, allow_outside)
            info = probe_image(src)  # decodes it: a text file or a GIF named `.jpg` is never copied
            if isinstance(info, str):
                raise ImageError(f"{src}: {info}")
            r, frame, dropped = upright_record(r, info)
            if (why := aspect_problem(r.size)) is not None:  # refused by `data check`
                raise ImageError(f"{src}: {why}")
        except ValueError as e:  # OutsideFolderError, ImageError
            reason = str(e).removeprefix(f"{src}: ")
            if not _lexists(find_file(Path(r.image))):  # --allow-outside would not help: nothing is there
                reason = f"image file not found{names.note(r.image)}" if isinstance(e, OutsideFolderError) else \
                    reason + names.note(r.image)
            else:
                outside += isinstance(e, OutsideFolderError)
            errors.append({"entry": entry, "file": r.image, "image_id": r.id, "reason": reason})
            continue
        r = r.model_copy(update={"objects": [o.model_copy(update={"desc": _hierarchy_label(o.desc, hierarchy, english)})
                                             for o in r.objects]})
        digest, data = photo_digests(src)
        if data in imported:  # one photo twice: its boxes would count twice, and a split could leak it
            kept_as, rel, kept_bytes, kept_turn = imported[data]
            same_file = os.path.normpath(os.path.abspath(r.image)) == os.path.normpath(os.path.abspath(kept_as.image))
            how = (f"the same photo as image id {kept_as.id}" if same_file else
                   f"the same bytes as {kept_as.image} (image id {kept_as.id})" if digest == kept_bytes else
                   f"the same image data as {kept_as.image} (image id {kept_as.id}), only its metadata differs")
            said, differs = folded_copy(f"{how}, imported as {rel.as_posix()}", "imported", kept_as.objects, r.objects,
                                        f"image id {kept_as.id}", (kept_turn, info.orientation),
                                        "correct the file and import again")
            folded, other_boxes = folded + 1, other_boxes + differs
            errors.append({"entry": entry, "file": r.image, "image_id": r.id, "same_as": kept_as.image, "reason": said})
            continue
        rel = placer.place(src, preferred_name(src, images_dir), digest)
        imported[data] = (r, rel, digest, info.orientation)
        try:
            prints.append(photo_print(src))
        except ImageError:  # decoded whole just above; a file changed since is compared with nothing
            prints.append(None)
        photo_names.append(r.image)
        kept_entries[r.image] = entry
        errors += [{"entry": entry, "file": r.image, "image_id": r.id, "reason": why} for why in dropped]
        rotated += info.orientation in ROTATING_ORIENTATIONS
        on_raw += frame.annotated_on == "raw"
        # The sizes cannot tell which grid a flipped photo, a square one turned or a square annotation of a nearly square
        # turned one was drawn on (coords.resolve_vendor_frame).
        assumed += frame.ambiguous or entry in guessed
        rescaled += any(abs(v - 1.0) > 1e-6 for v in frame.scale)
        kept.append(r.model_copy(update={"images": [rel.as_posix()]}))
    if not kept:  # an empty dataset written with exit 0 reads as success
        # Why a photo failed, when photos were looked for: a bad annotation before them says nothing of why none was
        # found.
        first = errors[in_file] if len(errors) > in_file else errors[0] if errors else {}
        named = (f"{first['entry']} ({first['file']})" if first.get("entry") and first.get("file") else first.get("file")
                 or (f"image id {first['image_id']}" if first.get("image_id") is not None else ""))
        why = f"; the first{', ' + named if named else ''}: {first['reason']}" if errors else ""
        if not records:  # refused in the file itself, before any photo was looked for
            raise ValueError(f"{annotations}: no photo could be imported ({len(errors)} problems){why}. Nothing was "
                             "written")
        raise ValueError(f"{annotations}: none of its {len(records)} photos could be used{why}. Is {images_dir} the "
                         "folder its file_name paths are relative to? Nothing was written")
    unknown = Counter(o.desc for r in kept for o in r.objects if not hierarchy.is_valid(o.desc))
    # A copy a tool re-encoded has other bytes, so it was not folded above: both are kept (which is right is the
    # user's call), each later copy named in errors.jsonl, and a photo's copies, as its tiles, go to one side.
    together, near = near_copy_entries(photo_names, prints, "imported")
    skipped = len(errors)  # a near copy is named in errors.jsonl and imported: "1 entries skipped" counted it
    errors += [{"entry": kept_entries[e["file"]], **e} for e in near]
    train, val = split_by_origin(kept, [tile_origin(r) for r in kept], val_ratio, seed, together)
    extra = {"source": str(annotations), "skipped": skipped, "outside_images_dir": outside,
             "labels_outside_hierarchy": len(unknown),
             "labels_from_english": {written: label for written, label in sorted(english)},
             "exif": {"rotated": rotated, "annotated_on_raw": on_raw, "assumed_displayed": assumed},
             "resolution_differs": rescaled, "size_from_photo": sized, "boxes_from_segmentation": len(derived),
             "same_photo": {"folded": folded, "other_boxes": other_boxes}, "near_copies": len(near)}
    placer.flush()  # the photos on the disk before a file that names them is
    summary = write_dataset_folder(out, train, val, num_teachers, seed, extra, copies=groups_in(train, kept, together))
    write_text_atomic(out / ERRORS, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors))
    from_english = {written: (label, n) for (written, label), n in sorted(english.items())}
    return CocoImport(summary, errors, dict(sorted(unknown.items())), outside, from_english)


def _hierarchy_label(name: str, hierarchy: Hierarchy, english: Counter[tuple[str, str]]) -> str:
    """`name` as the hierarchy spells its label, from its Chinese or its English gloss (counted in `english`); an
    unknown name as it is."""
    if (label := hierarchy.canonical(name)) is not None:
        return label
    if (label := hierarchy.from_english(name)) is not None:
        english[name, label] += 1
        return label
    return name


def refuse_all_empty(annotations: Path, coco: dict[str, Any], records: list[ImageRecord],
                     errors: list[dict[str, Any]]) -> None:
    """ValueError naming the COCO file when every photo it would import holds no box: an empty `annotations` list, or
    one none of whose entries could be used.

    Such a file is almost always a wrong export (a test split's image_info file, exported without its boxes): trained
    on, every part in its photos is taught as background. `--allow-empty` imports it when the photos are meant to be
    empty. A file whose photos all failed is refused later, as no photo imported.
    """
    if not records or any(r.objects for r in records):
        return
    listed, photos = len(coco["annotations"]), f"{len(records)} photo{'s' if len(records) != 1 else ''}"
    what = (f"its annotations list is empty: its {photos} would be imported with no parts, as if nothing were in "
            "them (a test split's file, exported without its boxes?)" if not listed else
            f"none of its {listed} annotations could be used (the first, {_first_annotation_problem(errors)}): the "
            f"{photos} left would be imported with no parts, as if nothing were in them")
    raise ValueError(f"{annotations}: {what}. Nothing was written; pass --allow-empty if these photos are meant to "
                     "have no parts")


def _first_annotation_problem(errors: list[dict[str, Any]]) -> str:
    """`annotations[i]: why` of the first annotation skipped (`?` when none is named)."""
    first = next((e for e in errors if str(e.get("entry", "")).startswith("annotations[")), None)
    return "?" if first is None else f"{first['entry']}: {first['reason']}"


def _sizes_from_photos(coco: dict[str, Any], images_dir: Path,
                       allow_outside: bool) -> tuple[dict[str, Any], int, dict[str, str], set[str]]:
    """`coco` with the width and height of each image entry that gives neither read from its photo's header (as
    `unsized_grid` chooses its grid, as `data convert` does for a vendor file without `info`); how many were read;
    by JSON path, why a photo gave none; and the JSON paths of those whose grid was assumed. Some tools write no
    sizes; before, each of their photos was refused."""
    images = coco.get("images")
    if not isinstance(images, list):
        return coco, 0, {}, set()
    read, unsized, entries, guessed = 0, {}, [], set()
    boxes = _boxes_by_image(coco)
    for i, im in enumerate(images):
        name = im.get("file_name") if isinstance(im, dict) and "width" not in im and "height" not in im else None
        if isinstance(name, str) and name.strip():
            try:
                path = images_dir / photo_name(name)  # as coco_to_records joins it
            except ValueError as e:  # a URL of no file here
                unsized[f"images[{i}]"], entries = str(e), [*entries, im]
                continue
            try:
                info = probe_image(file_inside(path, images_dir, allow_outside), decode=False)
            except ValueError as e:  # OutsideFolderError, a NUL in the name
                info = str(e)
            if isinstance(info, str):
                unsized[f"images[{i}]"] = info.removeprefix(f"{path}: ")
            else:
                (width, height), assumed = unsized_grid(info, boxes.get(id_key(im.get("id")), []))
                im, read = {**im, "width": width, "height": height}, read + 1
                if assumed:
                    guessed.add(f"images[{i}]")
        entries.append(im)
    return {**coco, "images": entries}, read, unsized, guessed


def unsized_grid(info: ImageInfo, boxes: list[list[float]]) -> tuple[tuple[int, int], bool]:
    """The grid boxes were drawn on for a photo whose entry gives no size, and whether it was assumed: the photo as
    viewers show it, unless it turns (EXIF 5-8, not square) and its boxes lie within the file's own grid alone (a
    tool that drew on the pixels as stored: read as shown, a box past the turned photo's edge was dropped and the
    others kept in the wrong place); boxes within both grids cannot tell them apart, and displayed is assumed."""
    if info.orientation not in ROTATING_ORIENTATIONS or info.raw[0] == info.raw[1] or not boxes:
        return info.upright, False
    on_raw, on_shown = (all(box_inside(b, size, OVERSHOOT_TOLERANCE) for b in boxes) for size in (info.raw, info.upright))
    if on_raw and not on_shown:
        return info.raw, False
    return info.upright, on_raw


def _boxes_by_image(coco: dict[str, Any]) -> dict[int | str, list[list[float]]]:
    """The annotations' boxes `[x1, y1, x2, y2]` by image id, of those that give a bbox of four finite numbers (the
    others are refused, or read from their segmentation, later)."""
    found: dict[int | str, list[list[float]]] = {}
    annotations = coco.get("annotations")
    for ann in annotations if isinstance(annotations, list) else []:
        bbox = ann.get("bbox") if isinstance(ann, dict) else None
        image_id = id_key(ann.get("image_id")) if isinstance(ann, dict) else None
        if image_id is None or not (isinstance(bbox, list) and len(bbox) == 4 and all(map(is_json_number, bbox))
                                    and all(math.isfinite(v) for v in bbox)):
            continue
        x, y, w, h = (float(v) for v in bbox)
        found.setdefault(image_id, []).append([x, y, x + w, y + h])
    return found


def _lexists(path: Path) -> bool:
    """Whether anything (a link too) is at `path`; False for a name no file can have."""
    try:
        return os.path.lexists(path)
    except (OSError, ValueError):
        return False


class _NamesUnder:
    """Where files of each name lie under a folder, read once when first asked: a COCO file written with the paths
    of the machine that made it (`C:/Users/bob/export/site/a.jpg`) names photos that are here under other folders."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._where: dict[str, list[str]] | None = None

    def note(self, missing: str) -> str:
        """A note naming the files under the folder that have `missing`'s file name ('' when none has it)."""
        if self._where is None:
            self._where = {}
            for root, _, files in os.walk(self.folder):
                for name in files:
                    rel = (Path(root) / name).relative_to(self.folder).as_posix()
                    self._where.setdefault(file_name_key(name), []).append(rel)
        name = PurePosixPath(missing).name
        # The file the name gives in other letter case, folders too, is named by the image's own note (data/images.py)
        spelt = os.path.relpath(missing, self.folder).replace(os.sep, "/").casefold()
        found = sorted(f for f in self._where.get(file_name_key(name), []) if f.casefold() != spelt)
        if not found and name != name.strip():  # a name typed in a spreadsheet keeps the space after it
            found = sorted(self._where.get(file_name_key(name.strip()), []))
            if found:
                return f"; its file_name has spaces around the name, and {self.folder} holds {', '.join(found[:3])}"
        if not found:
            return ""
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        return (f"; {self.folder} holds {shown} of its name: was file_name written as a path of the machine that "
                f"made the COCO file? Write it relative to {self.folder}")


def upright_record(record: ImageRecord, info: ImageInfo) -> tuple[ImageRecord, VendorFrame, list[str]]:
    """The record in the upright photo's frame, the grid its COCO size was read as, and the boxes it could not keep.

    The size a COCO file gives is the grid its boxes were drawn on, decided from the sizes as `data convert` decides a
    vendor file's (coords.resolve_vendor_frame): the file's own pixel grid of a photo viewers show turned (EXIF
    orientation 5-8, not square) says the tool read and drew on that grid, and the photo's shape at another resolution
    (photos downscaled since they were annotated) scales the boxes to the photo. ValueError when the size has neither
    grid's shape (another photo, or a crop); a box that scaling leaves less than a pixel wide is named and dropped.
    """
    upright = info.upright
    try:
        frame = resolve_vendor_frame(record.size, info.raw, info.orientation)
    except ValueError:
        raise ValueError(f"width/height {record.width}x{record.height} do not match image {Path(record.image).name}, "
                         f"which is {upright[0]}x{upright[1]}, nor its shape at another resolution") from None
    if frame.annotated_on == "oriented" and record.size == upright:
        return record, frame, []
    kept, dropped = [], []
    for o in record.objects:
        box = clip_box([round(v, 2) for v in vendor_to_stored(o.bbox_2d, frame, info.raw, info.orientation)], upright)
        if box_is_degenerate(box):
            corners = ", ".join(f"{v:g}" for v in o.bbox_2d)
            dropped.append(f"box [{corners}] (x1, y1, x2, y2) of {show_text(o.desc)} is less than a pixel wide on the photo, "
                           f"{upright[0]}x{upright[1]} where the COCO file gives {record.width}x{record.height}: dropped")
            continue
        kept.append(o.model_copy(update={"bbox_2d": box}))
    if record.objects and not kept:  # kept empty, it would teach "nothing here" where the file says there are parts
        raise ValueError(f"none of its {len(record.objects)} boxes is a pixel wide on the photo, {upright[0]}x"
                         f"{upright[1]} where the COCO file gives {record.width}x{record.height}")
    return record.model_copy(update={"width": upright[0], "height": upright[1], "objects": sort_objects(kept)}), frame, \
        dropped


def export_coco(dataset: str | Path, out: str | Path) -> dict[str, Any]:
    """Write a dataset JSONL as a COCO detection file (file_name relative to its folder); returns the COCO dict.

    The photos' ids are kept as image ids when all are whole numbers, as `import_coco` writes them, so a COCO file
    imported and exported again names its photos by the same ids (docs/data_coco.md).

    DatasetError naming both lines for a photo on two lines: as two image entries, every COCO evaluation would count
    its boxes twice, and `import_coco` keeps only the first.

    Refused (OutputConflict) before anything is written when `out` is `dataset` (the same real path or inode), or
    another process writes or reads it (data/library_outputs.py)."""
    with holding_outputs("data export-coco", {"dataset": dataset}, [out]):
        return _export_held(Path(dataset), Path(out))


def _export_held(dataset: Path, out: Path) -> dict[str, Any]:
    """`export_coco`, its output held."""
    rows = once_each(require_photos(read_lines(dataset), dataset), dataset)
    photos_found(rows, dataset)  # a JSONL copied out of its folder named photos that are not there, and import refused them
    records = [sample.student for _, sample in rows]
    absolute = [r.model_copy(update={"images": [resolve_image(dataset, i).as_posix() for i in r.images]})
                for r in records]
    out.parent.mkdir(parents=True, exist_ok=True)
    coco = records_to_coco(absolute, image_root=real_path(out.parent), keep_ids=True)
    for image in coco["images"]:  # a file_name relative to OUT that passes a folder named in bytes that are not UTF-8
        if (problem := not_text(image["file_name"])) is not None:
            raise ValueError(f"{out}: not written: image {image['id']}'s file_name {problem}")
    write_text_atomic(out, json.dumps(coco, ensure_ascii=False) + "\n")
    return coco
