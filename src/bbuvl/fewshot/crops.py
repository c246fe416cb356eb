"""Cut a dataset's labelled boxes into a class-folder tree (`<out>/<label path>/*.png`): support or query sets.

A label `category/attribute/state` becomes nested folders, which `read_support` and the folder queries
read back as the same label. A box with nothing of the photo inside it (outside the photo, or of no width or height)
is skipped and said, as the queries' are: saved, it would be a support image of no part under the class's name.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable
import warnings

from bbuvl.atomic import save_atomic
from bbuvl.data.coords import box_is_degenerate
from bbuvl.data.images import load_image, stored_crop
from bbuvl.data.labels import label_at_level
from bbuvl.data.names import NameBook, fit_name, portable_part
from bbuvl.data.schema import iter_dataset, resolve_image
from bbuvl.fewshot.embed import crop_box


def write_crops(
    dataset: str | Path,
    out: str | Path,
    classes: Iterable[str] | None = None,
    per_class: int | None = None,
    margin: float = 0.0,
    level: int | None = None,
    skipped: list[str] | None = None,
) -> dict[str, int]:
    """Write up to `per_class` crops of each label (only `classes` when given) as PNGs; returns counts per label.

    Boxes with nothing of the photo inside are left out, each said in `skipped` (a warning when it is not given).
    """
    dataset, out = Path(dataset), Path(out)
    wanted = set(classes) if classes is not None else None
    counts: dict[str, int] = defaultdict(int)
    names = NameBook()  # `a.jpg` and `a.jpeg`, or two folders' `a.jpg`, crop to one stem
    rows = list(iter_dataset(dataset))
    if bad := next((row.error for row in rows if row.error is not None), None):
        raise bad  # before any crop is written, as a bad line always was
    for row in rows:
        record = row.sample.student
        boxes = [(i, label_at_level(o.desc, level), o.bbox_2d) for i, o in enumerate(record.objects)]
        boxes = [(i, label, box) for i, label, box in boxes
                 if (wanted is None or label in wanted) and (per_class is None or counts[label] < per_class)]
        if not boxes:
            continue
        photo = resolve_image(dataset, record.image)
        loaded = load_image(photo)  # a JPEG past Pillow's limit decodes smaller: boxes are in the stored photo's pixels
        for i, label, box in boxes:
            if per_class is not None and counts[label] >= per_class:
                continue
            cut = crop_box(box, margin, loaded.size)
            if box_is_degenerate(cut):  # as a query's box is judged (fewshot/embed.py)
                (w, h), where = loaded.size, f"{dataset}:{row.line} objects[{i}]"
                _say(skipped, f"{where}: {photo}: box {list(box)} is empty inside the {w}x{h} image: skipped")
                continue
            x1, y1, x2, y2 = (int(round(v)) for v in cut)
            folder = out.joinpath(*label.split("/"))
            folder.mkdir(parents=True, exist_ok=True)
            # The photo's stem as every system can hold it (`a:b.jpg` -> `a_b_00.png`): a crop set is copied between
            # machines; the folders are the labels themselves, which read_support reads back.
            stem = portable_part(Path(record.image).stem)
            # Cut to leave room for a hash and the temporary it is written as (data/names.py)
            derived = fit_name(f"{folder.relative_to(out).as_posix()}/{stem}_{i:02d}.png", f"{photo}#{i}")
            name = names.name(derived, f"{photo}#{i}")
            crop = stored_crop(loaded.image, loaded.size, (x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))
            save_atomic(out / name, lambda fh: crop.save(fh, "PNG"))
            counts[label] += 1
    return dict(counts)


def _say(skipped: list[str] | None, message: str) -> None:
    if skipped is None:
        warnings.warn(message, stacklevel=3)
    else:
        skipped.append(message)
