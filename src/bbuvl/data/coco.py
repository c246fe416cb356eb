"""COCO detection JSON <-> canonical records (boxes xywh <-> xyxy, category name <-> `desc`).

Both directions are pure: no file is read or written here, so evaluation can build COCO ground truth
from records exactly as export does.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from bbuvl.data.check import duplicate_pairs
from bbuvl.data.coords import box_inside, box_is_degenerate, clip_box
from bbuvl.data.jsonfile import is_json_number, json_kind
from bbuvl.data.labels import label_at_level
from bbuvl.data.schema import MAX_SIDE, ImageRecord, ObjectAnn, sort_objects
from bbuvl.data.names import local_file_uri, url_start
from bbuvl.data.text import SEP, clean_label, label_parts, label_problem, name_as_text, not_text, same_label, show_text

# Annotation tools often let a box overshoot the border by a fraction of a pixel: clip that, reject more.
OVERSHOOT_TOLERANCE = 1.0


def kept_image_ids(records: list[ImageRecord]) -> list[int] | None:
    """The records' own ids as COCO image ids, when every record has one that is a whole number written as such
    ("17", as `import_coco` keeps a COCO file's id) and no two share one; None otherwise."""
    ids = [r.id for r in records]
    if not all(isinstance(i, str) and re.fullmatch(r"-?[0-9]+", i) and str(int(i)) == i for i in ids):
        return None
    numbers = [int(i) for i in ids if i is not None]
    return numbers if len(set(numbers)) == len(numbers) else None


def records_to_coco(records: list[ImageRecord], image_root: Path | None = None,
                    keep_ids: bool = False) -> dict[str, Any]:
    """A COCO detection dict: image ids 1..N in record order, annotation ids 1..M, categories = sorted labels.

    `file_name` is each record's image path; with `image_root`, absolute paths are written relative to it. With
    `keep_ids`, the records' own ids are the image ids where `kept_image_ids` finds them all; any other record id
    (a tile's `photo@x,y,wxh`) is written as `record_id`, and a record's `source` and `magnified` under their names,
    which `coco_to_records` reads back: without them an import split a photo's tiles between train and val, and took
    tiles written at --zoom for photos as taken (docs/data_coco.md).
    """
    names = sorted({o.desc for r in records for o in r.objects})
    cat_id = {name: i for i, name in enumerate(names, start=1)}
    images, annotations = [], []
    kept = kept_image_ids(records) if keep_ids else None
    for image_id, r in zip(kept or range(1, len(records) + 1), records):
        file_name = r.image
        if image_root is not None and Path(file_name).is_absolute():
            try:
                file_name = Path(os.path.relpath(file_name, image_root)).as_posix()
            except ValueError:  # another drive (Windows): keep the absolute path
                pass
        images.append({"id": image_id, "file_name": file_name, "width": r.width, "height": r.height})
        if keep_ids and kept is None and r.id is not None:
            images[-1]["record_id"] = r.id
        if keep_ids and r.source is not None:
            images[-1]["source"] = r.source
        if keep_ids and r.magnified is not None:  # a tile's scale, which training and tiles' `auto` grid read
            images[-1]["magnified"] = r.magnified
        for o in r.objects:
            x1, y1, x2, y2 = o.bbox_2d
            w, h = x2 - x1, y2 - y1
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": cat_id[o.desc],
                "bbox": [x1, y1, w, h],
                "area": w * h,
                "iscrowd": 0,
            })
    categories = [{"id": i, "name": n, "supercategory": label_at_level(n, 1)} for n, i in cat_id.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


def _error(reason: str, **where: Any) -> dict[str, Any]:
    return {**{k: _standard(v) for k, v in where.items()}, "reason": reason}


def _standard(value: Any) -> Any:
    """`value` as standard JSON holds it: a NaN or infinite id (Python's json reads and writes them) as its text, or
    errors.jsonl holds a line that jq and every strict reader refuse."""
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    if isinstance(value, str):
        return name_as_text(value)  # a name that is no UTF-8 text could not be written at all
    if isinstance(value, list):
        return [_standard(v) for v in value]
    if isinstance(value, dict):
        return {k: _standard(v) for k, v in value.items()}
    return value


def _listed(coco: dict[str, Any], key: str, errors: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The objects listed under `coco[key]`, each with its JSON path (`annotations[7]`: where to find it in the file,
    also when it has no id); an entry that is no object is an error of its own, and a `key` that is no list a
    ValueError (the file is no COCO detection file)."""
    entries = coco.get(key, [])
    if not isinstance(entries, list):
        raise ValueError(f"'{key}' must be an array, got {json_kind(entries)}")
    kept = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict):
            kept.append((f"{key}[{i}]", entry))
        else:
            errors.append(_error(f"{key}[{i}] is {json_kind(entry)}, not an object", entry=f"{key}[{i}]"))
    return kept


# 1.5 or true named as an id: "no number" was wrong for 1.5, which is one.
_NO_ID = "is neither a whole number nor a string, so it names no entry"


def id_key(value: Any) -> int | str | None:
    """A COCO id as a key: an int (1.0 too, as pandas writes ids), or a string as some tools write it; anything else
    names nothing."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def _same_digits(key: int | str | None) -> int | str | None:
    """The id of the other JSON type written with the same digits ("1" for 1, 1 for "1"); None when there is none."""
    if isinstance(key, int):
        return str(key)
    return int(key) if isinstance(key, str) and re.fullmatch(r"-?[0-9]+", key) and str(int(key)) == key else None


def _typed_otherwise(what: str, value: Any, key: int | str | None, listed: Mapping[Any, Any], listing: str) -> str | None:
    """Why an annotation's `what` (image_id, category_id) names nothing when `listing` holds its digits as the other
    JSON type: every COCO reader tells the string "1" from the number 1, so the box would belong to nothing there
    either. None when no listed id is written with its digits."""
    other = _same_digits(key)
    if other is None or other not in listed:
        return None
    kinds = ("the string", "the number") if isinstance(key, str) else ("the number", "the string")
    return (f"{what} is {kinds[0]} {json.dumps(value)} but the {listing} list {kinds[1]} {json.dumps(other)}: a string "
            f"and a number are different ids to every COCO reader; write {what} as the {listing} do")


def _far_edge(start: float, size: float) -> float:
    """`start + size`, as it was typed where the sum is one binary unit off it: exported as x2 - x1, `113.3` came back as
    113.30000000000001. The sum cut to 15 significant digits is taken when it gives the file's size back exactly."""
    total = start + size
    typed = float(f"{total:.15g}")
    return typed if typed - start == size else total


def photo_name(file_name: str) -> str:
    """A COCO `file_name` as the path it names (joined to IMAGES_DIR, which an absolute one ignores): a `file:` URI of
    this machine as its path (docs/data_coco.md), `\\` as `/` (tools on Windows write `sub\\a.jpg`; on any system that
    is the file `a.jpg` in the folder `sub`). ValueError quoting it as written for a URL of any other kind: joined to
    IMAGES_DIR, `file:///data/a.jpg` was refused as `IMAGES_DIR/file:/data/a.jpg`, "download it"."""
    if (path := local_file_uri(file_name)) is not None:
        if (problem := not_text(path)) is not None:  # escapes of bytes that are not UTF-8: no dataset line holds them
            raise ValueError(f"file_name {show_text(file_name)}: {problem}")
        return path
    if (scheme := url_start(file_name)) is not None:
        where = " of another machine" if scheme == "file" else ""
        raise ValueError(f"file_name {show_text(file_name)} is a URL ({scheme}://){where}: photos are read from local "
                         "files only; download it and write its path")
    return file_name.replace("\\", "/")


def coco_to_records(coco: dict[str, Any], images_dir: Path, from_segmentation: list[str] | None = None,
                    entries: list[str] | None = None) -> tuple[list[ImageRecord], list[dict[str, Any]]]:
    """Records (one per COCO image, objects sorted, image path `images_dir/file_name`) and the skipped entries.

    An annotation without a bbox gets the extent of its `segmentation` (polygons, or an RLE mask compressed or not,
    `segmentation_box`); the JSON path of each such box kept is appended to `from_segmentation` when one is given.
    The JSON path of each record's image entry (`images[3]`) is appended to `entries`, in the records' order, when one
    is given: what is said later of its photo names the entry too.

    Paths are only joined here; whether the file exists, stays inside `images_dir` and is a photo is
    decided where files are read (`coco_files.import_coco`).

    Crowd annotations, annotations with neither a bbox nor a usable segmentation, degenerate or outside boxes, unknown image or category ids, images without a usable
    size, entries that are no objects, ids listed twice for two photos (their annotations could belong to either)
    and a box listed twice are skipped, each with an error entry naming it and its JSON path (`annotations[7]`); an
    image listed twice alike is read once. ValueError when the file has no `annotations` list.
    """
    if not isinstance(coco.get("annotations"), list):
        got = type(coco["annotations"]).__name__ if "annotations" in coco else "none"
        raise ValueError(f"not a COCO detection file: 'annotations' must be a list of boxes, got {got}")
    listed = [a for a in coco["annotations"] if isinstance(a, dict)]
    if listed and not any("bbox" in a or "segmentation" in a for a in listed):
        raise ValueError(f"not a COCO detection file: none of its {len(listed)} annotations has a bbox (a captions or "
                         "panoptic file?)")
    errors: list[dict[str, Any]] = []
    categories: dict[int | str, str] = {}
    ambiguous: dict[int | str, set[str]] = {}  # category id -> its names, when listed with more than one
    for entry, c in _listed(coco, "categories", errors):
        cat_id, name = id_key(c.get("id")), c.get("name")
        if isinstance(name, str) and not label_problem(name):
            # Read as `data convert` reads a platform's label: `线缆/` and `线缆 / ` are 线缆, where they were kept as
            # labels no hierarchy holds, which `data check` and training then refused in every photo.
            name = SEP.join(label_parts(name))
        if cat_id is None or not isinstance(name, str) or not clean_label(name):
            # Its annotations are reported as of an unknown category, after this line saying why.
            why = (f"category id {json.dumps(c.get('id'), ensure_ascii=False)} {_NO_ID}" if cat_id is None
                   else f"category id {cat_id!r}: name {json.dumps(c.get('name'), ensure_ascii=False)} is no label")
            errors.append(_error(why, entry=entry, category_id=c.get("id")))
            continue
        problem = label_problem(name)
        if problem:  # its annotations are reported as of an unknown category, after this line saying why
            errors.append(_error(f"category id {cat_id!r}: {problem}", entry=entry))
            continue
        # One label typed twice (`线缆` and `线缆 `, a full-width letter) is one category; its first spelling is kept.
        if not same_label(categories.setdefault(cat_id, name), name):
            ambiguous.setdefault(cat_id, {categories[cat_id]}).add(name)
    images: dict[int | str, dict[str, Any]] = {}
    repeated: set[int | str] = set()  # image ids listed twice
    refused: dict[int | str, str] = {}  # image id -> the JSON path of its entry, refused for another reason
    for entry, im in _listed(coco, "images", errors):
        image_id = id_key(im.get("id"))
        try:
            if image_id is None:
                raise ValueError(f"id {json.dumps(im.get('id'), ensure_ascii=False)} {_NO_ID}")
            size = (_whole(im["width"], "width"), _whole(im["height"], "height"))
            file_name = im["file_name"]
            if not isinstance(file_name, str) or not file_name.strip():
                raise ValueError(f"file_name {file_name!r} names no file")
            if (problem := not_text(file_name)) is not None:  # a `\udcbb` escape: no dataset line could hold it
                raise ValueError(f"file_name {problem}")
            file_name = photo_name(file_name)
            if size[0] <= 0 or size[1] <= 0:
                raise ValueError(f"size {size[0]}x{size[1]}")
            if max(size) > MAX_SIDE:  # the record refused it at the end, a pydantic dump that stopped the whole import
                raise ValueError(f"size {size[0]:g}x{size[1]:g} is longer than any image file's side ({MAX_SIDE})")
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            detail = f"no {e}" if isinstance(e, KeyError) else e  # KeyError says only 'width'
            errors.append(_error(f"image entry without a usable id/file_name/width/height ({detail})", entry=entry,
                                 image_id=im.get("id")))
            if image_id is not None:
                refused.setdefault(image_id, entry)
            continue
        same = images.get(image_id)
        if same is not None and (same["file_name"], same["size"]) == (file_name, size):
            # Two files merged by concatenating their lists name each photo they share twice, alike: one photo.
            errors.append(_error(f"image id {image_id!r} is listed again as in {same['entry']}, the same file and size: "
                                 "read once", entry=entry, image_id=image_id, file=file_name))
            continue
        if image_id in images or image_id in repeated:
            errors.append(_error(f"image id {image_id!r} is listed more than once (also for "
                                 f"{images.get(image_id, {}).get('file_name', 'another entry')}): give each image its "
                                 "own id", entry=entry, image_id=image_id, file=file_name))
            repeated.add(image_id)
            images.pop(image_id, None)
            continue
        images[image_id] = {"file_name": file_name, "size": size, "objects": [], "listed": 0, "entry": entry,
                            "id": _name(im.get("record_id")) or str(image_id), "source": _name(im.get("source")),
                            "magnified": _scale(im.get("magnified"))}

    boxes: dict[tuple[Any, ...], str] = {}  # (image id, box, label) -> the entry that listed it first
    for entry, ann in _listed(coco, "annotations", errors):
        where = {"entry": entry, "annotation_id": ann.get("id"), "image_id": ann.get("image_id")}
        image_id = id_key(ann.get("image_id"))
        if image_id in repeated:
            errors.append(_error("its image id is listed more than once: which photo it belongs to is unknown", **where))
            continue
        image = images.get(image_id) if image_id is not None else None
        if image is None:
            typed = _typed_otherwise("image_id", ann.get("image_id"), image_id, images, "images")
            if typed is not None:  # the file does name a photo that has parts: never keep it empty
                images[_same_digits(image_id)]["listed"] += 1
            shown = json.dumps(ann.get("image_id"), ensure_ascii=False)
            why = ("no image_id: the photo it belongs to is not named" if "image_id" not in ann else
                   f"image_id {shown} {_NO_ID}" if image_id is None else
                   f"its image, {refused[image_id]}, was refused (see its line)" if image_id in refused else
                   f"unknown image id {shown}")
            errors.append(_error(typed or why, **where))
            continue
        where["file"] = image["file_name"]
        image["listed"] += 1
        crowd = _flag(ann.get("iscrowd", 0))
        if crowd is None:
            errors.append(_error(f"iscrowd {json.dumps(ann['iscrowd'], ensure_ascii=False)} is neither 0 nor 1", **where))
            continue
        if crowd:
            errors.append(_error("crowd annotation (a region of many objects, not one box)", **where))
            continue
        cat_id = id_key(ann.get("category_id"))
        if cat_id in ambiguous:
            names = ", ".join(sorted(ambiguous[cat_id]))
            errors.append(_error(f"category id {cat_id!r} is listed with more than one name ({names})", **where))
            continue
        label = categories.get(cat_id) if cat_id is not None else None
        if label is None:
            typed = _typed_otherwise("category_id", ann.get("category_id"), cat_id, categories, "categories")
            unknown = (f"unknown category id {json.dumps(ann['category_id'], ensure_ascii=False)}" if "category_id" in ann
                       else "no category_id: its label is not named")
            errors.append(_error(typed or unknown, **where))
            continue
        where["label"] = label
        bbox, derived = ann.get("bbox"), False
        if bbox in (None, []) and "segmentation" not in ann:
            errors.append(_error("neither a bbox nor a segmentation: where the object is is not given", **where))
            continue
        if _placeholder(bbox) and ann.get("segmentation") not in (None, [], {}):
            # `[0, 0, 0, 0]` beside a mask, as some exporters write a box they never computed: the object was dropped
            # as "degenerate" with its segmentation there
            bbox = None
        if bbox in (None, []):  # an instance-segmentation export: its box is the mask's extent, as COCO's own are
            try:
                bbox = segmentation_box(ann["segmentation"], image["size"])
            except ValueError as e:
                given = "no bbox" if ann.get("bbox") in (None, []) else f"bbox {json.dumps(ann['bbox'])} has no area"
                errors.append(_error(f"{given}, and its segmentation gives none: {e}", **where))
                continue
            derived = True
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(is_json_number, bbox))):
            errors.append(_error(f"bbox must be [x, y, width, height], got {json.dumps(bbox, ensure_ascii=False)}", **where))
            continue
        x, y, w, h = (float(v) for v in bbox)
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            errors.append(_error(f"bbox {ann['bbox']} has a value that is not a finite number (NaN or infinity)", **where))
            continue
        if w < 0 or h < 0:  # reported as "degenerate [1, 2, -4, 12]" before, a box the file never wrote
            errors.append(_error(f"bbox {json.dumps(bbox)} has a negative width or height (COCO boxes are [x, y, width, "
                                 "height])", **where))
            continue
        box = [x, y, _far_edge(x, w), _far_edge(y, h)]
        size = image["size"]
        if not box_inside(box, size, OVERSHOOT_TOLERANCE):
            errors.append(_error(f"box {box} lies outside the {size[0]}x{size[1]} image", **where))
            continue
        if not box_inside(box, size):
            box = clip_box(box, size)
        if box_is_degenerate(box):
            errors.append(_error(f"degenerate box {box} (a side shorter than 1 pixel)", **where))
            continue
        key = (image_id, *box, label)
        if key in boxes:  # kept twice, the box would count twice, and `data check` refuses the dataset
            errors.append(_error(f"the same box and label as {boxes[key]}: an object listed twice; this copy was "
                                 "skipped", **where))
            continue
        boxes[key] = f"{entry} (id {json.dumps(ann.get('id'), ensure_ascii=False)})"
        image["objects"].append(ObjectAnn(bbox_2d=box, desc=label))
        if derived and from_segmentation is not None:
            from_segmentation.append(entry)
        image.setdefault("wheres", []).append((boxes[key], where))

    for im in images.values():
        # One box with two labels, or one label on nearly the same box: `data check` and training refuse the photo.
        dropped = set()
        for i, j, what in duplicate_pairs(im["objects"]):
            if i not in dropped and j not in dropped:
                dropped.add(j)
                errors.append(_error(f"{what}, as {im['wheres'][i][0]}: one object annotated twice; that one is kept "
                                     "(fix the file if this one is right)", **im["wheres"][j][1]))
        im["objects"] = [o for k, o in enumerate(im["objects"]) if k not in dropped]

    for image_id, im in list(images.items()):
        if im["listed"] and not im["objects"]:
            # Kept, it would teach "nothing here" where the file says there are parts, as convert does not either.
            errors.append(_error(f"none of its {im['listed']} annotations could be used: the photo is left out",
                                 entry=im["entry"], image_id=image_id, file=im["file_name"]))
            del images[image_id]
    records = []
    for image_id, im in images.items():
        try:
            records.append(ImageRecord(images=[(images_dir / im["file_name"]).as_posix()], width=im["size"][0],
                                       height=im["size"][1], objects=sort_objects(im["objects"]), id=im["id"],
                                       source=im["source"], magnified=im["magnified"]))
            if entries is not None:
                entries.append(im["entry"])
        except ValidationError as e:  # one entry the dataset cannot hold is that entry's error, never the import's
            why = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg'].removeprefix('Value error, ')}" for d in e.errors())
            errors.append(_error(f"image entry refused: {why}", entry=im["entry"], image_id=image_id, file=im["file_name"]))
    return records, errors


def _placeholder(bbox: Any) -> bool:
    """Whether a bbox is four numbers of no width and no height (`[0, 0, 0, 0]`): a box never computed, not an object."""
    return isinstance(bbox, list) and len(bbox) == 4 and all(map(is_json_number, bbox)) and bbox[2] == bbox[3] == 0


def segmentation_box(segmentation: Any, size: tuple[int, int]) -> list[float]:
    """The COCO box `[x, y, width, height]` of an annotation's segmentation on an image of `size` (width, height):
    the extent of its polygons' points, or of an RLE mask's pixels (faster-coco-eval's mask code, compressed `counts`
    text or uncompressed run lengths); ValueError saying what is wrong with it."""
    if isinstance(segmentation, dict):
        return _rle_box(segmentation, size)
    if not isinstance(segmentation, list) or not segmentation:
        raise ValueError(f"{_shown(segmentation)} is neither polygons [[x1, y1, x2, y2, ...], ...] nor an RLE "
                         "{\"size\": [height, width], \"counts\": ...}")
    xs, ys = [], []
    for i, polygon in enumerate(segmentation):
        if not (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
                and all(is_json_number(v) and math.isfinite(v) for v in polygon)):
            raise ValueError(f"polygon {i} {_shown(polygon)} is not x, y pairs of finite numbers, at least three points")
        xs += polygon[0::2]
        ys += polygon[1::2]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _rle_box(rle: dict[str, Any], size: tuple[int, int]) -> list[float]:
    """The box of an RLE mask (`segmentation_box`); its size must be the image entry's, as COCO writes it: [h, w]."""
    counts, shape = rle.get("counts"), rle.get("size")
    if shape != [size[1], size[0]]:
        raise ValueError(f"its RLE size {_shown(shape)} is not the image's [height, width], [{size[1]}, {size[0]}]")
    if isinstance(counts, list):
        if not all(is_json_number(c) and c == int(c) and c >= 0 for c in counts):
            raise ValueError(f"its RLE counts {_shown(counts)} are not whole run lengths")
        if sum(counts) != size[0] * size[1]:  # fewer would be read as a mask cut short, more the decoder refuses
            raise ValueError(f"its RLE run lengths add up to {sum(counts):g} pixels, not the image's {size[0] * size[1]}")
    elif not isinstance(counts, str):
        raise ValueError(f"its RLE counts {_shown(counts)} are neither a compressed text nor run lengths")
    from faster_coco_eval.core import mask  # only for RLE: every other import leaves it unloaded

    try:
        if isinstance(counts, list):
            encoded = mask.frPyObjects({"size": shape, "counts": [int(c) for c in counts]}, size[1], size[0])
        else:
            encoded = {"size": shape, "counts": counts.encode("ascii")}
        x, y, w, h = (float(v) for v in mask.toBbox(encoded))
    except (RuntimeError, ValueError, UnicodeEncodeError) as e:  # the C++ decoder's "RLE string is malformed"
        raise ValueError(f"its RLE counts do not decode ({e})") from None
    if w <= 0 or h <= 0:
        raise ValueError("its RLE mask holds no pixel")
    return [x, y, w, h]


def _shown(value: Any, limit: int = 60) -> str:
    """`value` as the file wrote it, cut to `limit` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _name(value: Any) -> str | None:
    """`value` when it is a string that names something; None otherwise. `record_id` and `source` are what
    `records_to_coco` writes beside a tile's image entry; another tool's keys of those names are not ours to refuse."""
    return value if isinstance(value, str) and value.strip() else None


def _scale(value: Any) -> float | None:
    """`value` when it is a finite number above 0 (`magnified`, as `records_to_coco` writes it); None otherwise."""
    return float(value) if is_json_number(value) and math.isfinite(value) and value > 0 else None


def _flag(value: Any) -> bool | None:
    """A COCO 0/1 flag (`iscrowd`): 0, 1, false, true or null, or "0"/"1" as some tools quote it; None for anything
    else. Python's truth took the string "0" for a crowd, dropping a box the file marks as one object."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if is_json_number(value) and value in (0, 1):
        return bool(value)
    return {"0": False, "1": True}.get(value.strip()) if isinstance(value, str) else None


def _whole(value: Any, key: str) -> int:
    """`value` as an int when JSON wrote it as a whole number; ValueError otherwise (int() would read "64" or 63.9)."""
    if not is_json_number(value) or not math.isfinite(value) or value != int(value):
        raise ValueError(f"{key} {json.dumps(value, ensure_ascii=False)} is not a whole number")
    return int(value)
