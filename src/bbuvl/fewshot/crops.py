"""Cut a dataset's labelled boxes into a class-folder tree (`<out>/<label path>/*.png`): support or query sets.

A label `category/attribute/state` becomes nested folders, which `read_support` and the folder queries
read back as the same label. A label part no folder can be read back as (`..`, `.`, a hidden `.x`, `shot3`, a name
Windows refuses) is written as the nearest name one can (`label_folder`), and a label whose folder is another's once
compared as macOS and Windows compare names (`BBU` and `bbu`: data/names.py `name_key`) gets its own, hashed: a
label `x/../y` was written into `y/` beside the crops of `y`, `../../z` outside `out`, and `BBU` and `bbu` into one
folder, one class read back. Each label written under another name than its own is said. A box with nothing of the
photo inside it (outside the photo, or of no width or height) is skipped and said, as the queries' are: saved, it would
be a support image of no part under the class's name.

The set fills a new folder that takes `out`'s name once every crop is in, and an `out` holding files is refused:
crops written beside an earlier run's (other classes, another dataset) were read back as one support set.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Iterable
import warnings

from bbuvl.atomic import atomic_folder, save_atomic
from bbuvl.data.coords import box_is_degenerate
from bbuvl.data.images import load_image, stored_crop
from bbuvl.data.labels import label_at_level
from bbuvl.data.names import NameBook, fit_name, portable_part
from bbuvl.data.text import show_text
from bbuvl.data.schema import iter_dataset, resolve_image
from bbuvl.fewshot.embed import crop_box
from bbuvl.fewshot.support import SHOT_DIR


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

    Boxes with nothing of the photo inside are left out, and a label written under another folder name than its own
    is named, each said in `skipped` (a warning when it is not given).
    """
    dataset, out = Path(dataset), Path(out)
    wanted = set(classes) if classes is not None else None
    counts: dict[str, int] = defaultdict(int)
    names = NameBook()  # `a.jpg` and `a.jpeg`, or two folders' `a.jpg`, crop to one stem
    folders = LabelFolders()
    rows = list(iter_dataset(dataset))
    if bad := next((row.error for row in rows if row.error is not None), None):
        raise bad  # before any crop is written, as a bad line always was
    if held := sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)):
        # Written beside them, an earlier run's crops (other classes, another dataset) were read back as one support
        # set with this one's; replaced whole, the user's files would go with the folder.
        raise ValueError(f"{out}: holds {', '.join(held[:3])}{f' and {len(held) - 3} more' if len(held) > 3 else ''}: "
                         "crops written beside them would be read back as one support set with them; give a new "
                         "folder, or remove them")
    # Filled beside its name and put there whole once every crop is in: a failed run leaves no half set
    with atomic_folder(out) as root:
        for row in rows:
            record = row.sample.student
            boxes = [(i, label_at_level(o.desc, level), o.bbox_2d) for i, o in enumerate(record.objects)]
            boxes = [(i, label, box) for i, label, box in boxes
                     if (wanted is None or label in wanted) and (per_class is None or counts[label] < per_class)]
            if not boxes:
                continue
            photo = resolve_image(dataset, record.image)
            # A JPEG past Pillow's limit decodes smaller: boxes are in the stored photo's pixels
            loaded = load_image(photo)
            for i, label, box in boxes:
                if per_class is not None and counts[label] >= per_class:
                    continue
                cut = crop_box(box, margin, loaded.size)
                if box_is_degenerate(cut):  # as a query's box is judged (fewshot/embed.py)
                    (w, h), where = loaded.size, f"{dataset}:{row.line} objects[{i}]"
                    _say(skipped, f"{where}: {photo}: box {list(box)} is empty inside the {w}x{h} image: skipped")
                    continue
                x1, y1, x2, y2 = (int(round(v)) for v in cut)
                folder = root / folders.folder(label, skipped)
                folder.mkdir(parents=True, exist_ok=True)
                # The photo's stem as every system can hold it (`a:b.jpg` -> `a_b_00.png`): a crop set is copied between
                # machines; the folders are the labels themselves, which read_support reads back.
                stem = portable_part(Path(record.image).stem)
                # Cut to leave room for a hash and the temporary it is written as (data/names.py)
                derived = fit_name(f"{folder.relative_to(root).as_posix()}/{stem}_{i:02d}.png", f"{photo}#{i}")
                name = names.name(derived, f"{photo}#{i}")
                crop = stored_crop(loaded.image, loaded.size, (x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))
                save_atomic(root / name, lambda fh: crop.save(fh, "PNG"))
                counts[label] += 1
    return dict(counts)


def label_part(part: str) -> str:
    """A label's part as a folder name that stays below its parent on every system and that `read_support` reads back
    as a class's part: `..` as `up` (as data/names.py `safe_stem`), a leading `.` (hidden: never read) as `_`, `_`
    after a name read as a shot folder (`shot3`), and what Windows refuses as `portable_part` writes it."""
    part = "up" if part == ".." else part
    part = "_" + part[1:] if part.startswith(".") else part
    part = part + "_" if SHOT_DIR.match(part) else part
    return portable_part(part)


def _label_parts(label: str) -> list[str]:
    """A label's parts as written, the empty ones (`a//b`, a leading `/`) and `.` left out."""
    return [p for p in label.split("/") if p not in ("", ".")] or ["label"]


def label_folder(label: str) -> str:
    """The folder (relative, POSIX) a label's crops are written into when no other label's takes it: its parts
    (`_label_parts`) as folders (`label_part`), each cut to fit a file system (`fit_name`)."""
    parts = _label_parts(label)
    return "/".join(fit_name(label_part(p), "/".join(parts[:i + 1])) for i, p in enumerate(parts))


class LabelFolders:
    """The folder of each label of one run, none shared by two labels on any system."""

    def __init__(self) -> None:
        self._book = NameBook()  # each folder on the way, owned by the label's parts that lead to it
        self._folders: dict[str, str] = {}

    def folder(self, label: str, notes: list[str] | None) -> str:
        """`label`'s folder: `label_folder`'s, with a hash after each part another label's parts took (`A/x` beside
        `a/y`: `a/` is `A/` on macOS and Windows); the first time a label is not written as itself, it is said."""
        if label in self._folders:
            return self._folders[label]
        parts, wanted, got = _label_parts(label), label_folder(label).split("/"), []
        for i, part in enumerate(wanted):
            # The leaf is the label's own; a folder on the way, that of the parts leading to it
            source = label if i == len(wanted) - 1 else "/".join(parts[:i + 1])
            got.append(PurePosixPath(self._book.name("/".join([*got, part]), source)).name)
        folder = self._folders[label] = "/".join(got)
        if folder != label:
            why = "is no folder read back as it" if folder == "/".join(wanted) else "is another label's folder there"
            _say(notes, f"label {show_text(label)}: its crops are in the folder {show_text(folder)}, the class that "
                        f"support and query folders read them as: its own name {why}")
        return folder


def _say(skipped: list[str] | None, message: str) -> None:
    if skipped is None:
        warnings.warn(message, stacklevel=3)
    else:
        skipped.append(message)
