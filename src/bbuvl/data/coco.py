"""COCO detection JSON <-> canonical records (boxes xywh <-> xyxy, category name <-> `desc`).

Both directions are pure: no file is read or written here, so evaluation can build COCO ground truth
from records exactly as export does.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from bbuvl.data.coords import box_inside, box_is_degenerate, clip_box
from bbuvl.data.labels import label_at_level
from bbuvl.data.schema import ImageRecord, ObjectAnn, sort_objects
from bbuvl.data.text import clean_label

# Annotation tools often let a box overshoot the border by a fraction of a pixel: clip that, reject more.
OVERSHOOT_TOLERANCE = 1.0


def records_to_coco(records: list[ImageRecord], image_root: Path | None = None) -> dict[str, Any]:
    """A COCO detection dict: image ids 1..N in record order, annotation ids 1..M, categories = sorted labels.

    `file_name` is each record's image path; with `image_root`, absolute paths are written relative to it.
    """
    names = sorted({o.desc for r in records for o in r.objects})
    cat_id = {name: i for i, name in enumerate(names, start=1)}
    images, annotations = [], []
    for image_id, r in enumerate(records, start=1):
        file_name = r.image
        if image_root is not None and Path(file_name).is_absolute():
            try:
                file_name = Path(os.path.relpath(file_name, image_root)).as_posix()
            except ValueError:  # another drive (Windows): keep the absolute path
                pass
        images.append({"id": image_id, "file_name": file_name, "width": r.width, "height": r.height})
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
    return {**where, "reason": reason}


def coco_to_records(coco: dict[str, Any], images_dir: Path) -> tuple[list[ImageRecord], list[dict[str, Any]]]:
    """Records (one per COCO image, objects sorted, image path `images_dir/file_name`) and the skipped entries.

    Paths are only joined here; whether the file exists, stays inside `images_dir` and is a photo is
    decided where files are read (`coco_files.import_coco`).

    Crowd annotations, degenerate or outside boxes, unknown image or category ids, and images without a
    usable size are skipped, each with an error entry naming its id.
    """
    errors: list[dict[str, Any]] = []
    categories = {c["id"]: str(c["name"]) for c in coco.get("categories", []) if "id" in c and clean_label(str(c.get("name") or ""))}
    images: dict[Any, dict[str, Any]] = {}
    for im in coco.get("images", []):
        try:
            size = (int(im["width"]), int(im["height"]))
            file_name = im["file_name"]
            if not isinstance(file_name, str) or not file_name.strip():
                raise ValueError(f"file_name {file_name!r} names no file")
            # Tools on Windows write `sub\\a.jpg`; on any system that is the file `a.jpg` in the folder `sub`.
            file_name = file_name.replace("\\", "/")
            if size[0] <= 0 or size[1] <= 0:
                raise ValueError(f"size {size[0]}x{size[1]}")
        except (KeyError, TypeError, ValueError) as e:
            errors.append(_error(f"image entry without a usable file_name/width/height ({e})", image_id=im.get("id")))
            continue
        images[im.get("id")] = {"file_name": file_name, "size": size, "objects": []}

    for ann in coco.get("annotations", []):
        where = {"annotation_id": ann.get("id"), "image_id": ann.get("image_id")}
        image = images.get(ann.get("image_id"))
        if image is None:
            errors.append(_error("unknown image id", **where))
            continue
        where["file"] = image["file_name"]
        if ann.get("iscrowd"):
            errors.append(_error("crowd annotation (a region of many objects, not one box)", **where))
            continue
        label = categories.get(ann.get("category_id"))
        if label is None:
            errors.append(_error(f"unknown category id {ann.get('category_id')}", **where))
            continue
        where["label"] = label
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            errors.append(_error(f"bbox must be [x, y, width, height], got {ann.get('bbox')}", **where))
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            errors.append(_error(f"bbox {ann['bbox']} has a value that is not a finite number (NaN or infinity)", **where))
            continue
        box = [x, y, x + w, y + h]
        size = image["size"]
        if not box_inside(box, size, OVERSHOOT_TOLERANCE):
            errors.append(_error(f"box {box} lies outside the {size[0]}x{size[1]} image", **where))
            continue
        if not box_inside(box, size):
            box = clip_box(box, size)
        if box_is_degenerate(box):
            errors.append(_error(f"degenerate box {box} (a side shorter than 1 pixel)", **where))
            continue
        image["objects"].append(ObjectAnn(bbox_2d=box, desc=label))

    records = [
        ImageRecord(
            images=[(images_dir / im["file_name"]).as_posix()],
            width=im["size"][0],
            height=im["size"][1],
            objects=sort_objects(im["objects"]),
            id=str(image_id),
        )
        for image_id, im in images.items()
    ]
    return records, errors
