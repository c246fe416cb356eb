"""Validate a dataset end to end: schema, image files, sizes, boxes, labels, duplicates, order.

Every problem is reported (checking never stops at the first), located as `file:line` with the
JSONL line, so a user can fix a whole export in one pass.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

import numpy as np

from bbuvl.data.boxes import box_iou
from bbuvl.data.coords import aspect_problem, box_inside, box_is_degenerate, oriented_size
from bbuvl.data.images import ImageError, exif_orientation, load_image, open_image, photo_digests
from bbuvl.data.input_paths import file_kind
from bbuvl.data.labels import Hierarchy
from bbuvl.data.names import name_key, portability_problem
from bbuvl.data.layout import TEACHERS, TRAIN, VAL, missing_file_hint, near_file
from bbuvl.data.near_copies import COPY_KINDS, how_alike, near_copies, photo_print
from bbuvl.data.one_photo import SAME_FILE, one_photo
from bbuvl.data.schema import (DatasetError, ImageRecord, ObjectAnn, Sample, iter_dataset, resolve_image, sort_objects,
                               tile_origin)
from bbuvl.data.text import difference, file_name_key, label_key, names_apart, one_line, short_words, show_text
from bbuvl.data.workers import bound_workers, worker_limit

Severity = Literal["error", "warning"]

BOX_TOLERANCE = 1e-3  # pixels; float round-off from converters, not a real overshoot
DUPLICATE_IOU = 0.95  # same label above this IoU: one object annotated twice


@dataclass
class Problem:
    """One finding, located by file and JSONL line (0 = the file as a whole)."""

    file: str
    line: int
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        # As DatasetError names it: "train.jsonl:0: missing" pointed at a line no file has.
        message = one_line(short_words(self.message))
        return f"{self.file}:{self.line}: {message}" if self.line else f"{self.file}: {message}"


@dataclass(frozen=True)
class ImageInfo:
    """What an image file says about its size: the pixel grid and how a viewer shows it."""

    raw: tuple[int, int]  # (width, height) of the pixel grid in the file
    upright: tuple[int, int]  # (width, height) after EXIF orientation: load_image's `size`
    orientation: int
    conversion: str | None = None  # what decoding to 8-bit RGB took beyond a plain conversion (data/images.py)


def probe_image(path: Path, decode: bool = True) -> ImageInfo | str:
    """Size and orientation of an image file, or a sentence saying why it cannot be used.

    With `decode`, the whole file is decoded (a truncated JPEG fails here); otherwise only the header is read.
    """
    if decode:
        try:
            img = load_image(path)
        except ImageError as e:
            return str(e).removeprefix(f"{path}: ")
        # the stored photo's upright size: a JPEG past Pillow's pixel limit decodes smaller (data/images.py)
        return ImageInfo(img.raw_size, img.size, img.orientation, img.conversion)
    try:
        with open_image(path, decode=False) as im:
            raw = im.size
            orientation = exif_orientation(im)  # as decoding applies it: a TIFF's, Pillow applies itself
    except ImageError as e:
        return str(e).removeprefix(f"{path}: ")
    except (OSError, SyntaxError, ValueError) as e:  # a corrupt EXIF block
        return f"cannot read image header: {e}"
    return ImageInfo(raw, oriented_size(raw, orientation), orientation)


def dataset_files(path: Path) -> tuple[list[Path], list[Problem]]:
    """The JSONL files to check under `path` (itself, or a dataset folder's train/val/teachers)."""
    if not path.is_dir():
        return [path], []
    # A folder or a pipe under a dataset file's name is checked, so that reading it names what it is, not "missing".
    files = [path / name for name in (TRAIN, VAL, TEACHERS) if file_kind(path / name) != "no such file"]
    problems = []
    if path / TRAIN not in files:
        problems.append(Problem(str(path / TRAIN), 0, "missing: a dataset folder needs a train.jsonl"
                                + missing_file_hint(path, TRAIN)))
    for name in (VAL, TEACHERS):
        if path / name not in files:
            # Optional, unless its photos are there under another name (`Val.jsonl`, `valid.jsonl`), which nothing reads
            if near_file(path, name) is not None:
                problems.append(Problem(str(path / name), 0, f"missing{missing_file_hint(path, name)}"))
            else:
                problems.append(Problem(str(path / name), 0, "missing (optional, but usual in a dataset folder)",
                                        "warning"))
    return files, problems


def sample_records(sample: Sample) -> Iterator[tuple[str, ImageRecord]]:
    """Each record of a sample with the prefix that names it in messages ('' for a plain photo)."""
    if not sample.teachers:
        yield "", sample.student
        return
    for i, t in enumerate(sample.teachers):
        yield f"teachers[{i}]: ", t
    yield "student: ", sample.student


def check_size(record: ImageRecord, image: str, info: ImageInfo) -> str | None:
    """None when the record's width/height match the upright image, else what is wrong."""
    declared = record.size
    if declared == info.upright:
        return None
    w, h = info.upright
    if declared == info.raw:
        return (
            f"EXIF-rotated: image {image} is {info.raw[0]}x{info.raw[1]} in the file but shown upright as {w}x{h} "
            f"(EXIF orientation {info.orientation}); the record has the raw size {declared[0]}x{declared[1]}, so its "
            f"boxes are probably in the raw frame: re-convert it (bbuvl data convert decides the frame from the sizes)"
        )
    return f"width/height {declared[0]}x{declared[1]} do not match image {image}, which is {w}x{h}"


def _fmt_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def _box_problems(i: int, box: Sequence[float], size: tuple[int, int]) -> Iterator[tuple[str, Severity]]:
    """What is wrong with object `i`'s box in a `size` image: outside it, or without area."""
    if not box_inside(box, size, BOX_TOLERANCE):
        yield f"objects[{i}]: box {_fmt_box(box)} lies outside the {size[0]}x{size[1]} image", "error"
    if box_is_degenerate(box):
        yield f"objects[{i}]: box {_fmt_box(box)} is degenerate (a side shorter than 1 pixel)", "error"


def check_boxes(record: ImageRecord) -> Iterator[tuple[str, Severity]]:
    """Problems of one record's boxes alone (outside the image, degenerate, one object twice): the rules training
    applies too (train/dataset.py), since such a box would teach a target that is not the object."""
    for i, o in enumerate(record.objects):
        yield from _box_problems(i, o.bbox_2d, record.size)
    yield from _duplicate_objects(record.objects)


def check_objects(record: ImageRecord, hierarchy: Hierarchy) -> Iterator[tuple[str, Severity]]:
    """Box, label, duplicate and order problems of one record's objects, and a size no model frame holds."""
    if (why := aspect_problem(record.size)) is not None:  # `data stats` and training refused what check passed
        yield f"image {record.image}: {why}", "error"
    objs = record.objects
    for i, o in enumerate(objs):
        yield from _box_problems(i, o.bbox_2d, record.size)
        why = hierarchy.problem(o.desc)
        if why is not None and hierarchy.from_english(o.desc) is None:  # `data convert --lang en` writes glosses
            yield f"objects[{i}]: {why}", "error"
        elif why is not None:
            continue
        elif (spelt := hierarchy.canonical(o.desc)) != o.desc:
            yield (f"objects[{i}]: label {show_text(o.desc)} counts as the hierarchy's {show_text(spelt)} but is typed "
                   f"differently ({difference(o.desc, spelt)}); the model learns it as typed", "warning")
    yield from _duplicate_objects(objs)
    ordered = sort_objects(objs)
    if ordered != objs:
        first = next(i for i, (o, s) in enumerate(zip(objs, ordered)) if o is not s)
        yield (
            f"objects not sorted by (y1, x1) (first out of place: objects[{first}]); "
            "the model is taught to emit them in that order",
            "warning",
        )


def _duplicate_objects(objs: Sequence[ObjectAnn]) -> Iterator[tuple[str, Severity]]:
    """Pairs of objects annotated twice, each an error."""
    for i, j, what in duplicate_pairs(objs):
        yield f"objects[{i}] and objects[{j}]: {what}", "error"


def duplicate_pairs(objs: Sequence[ObjectAnn]) -> list[tuple[int, int, str]]:
    """`(i, j, what)` for each pair of objects annotated twice, i < j, sorted: one box exactly, or one label on nearly
    the same box.

    Near-linear in objects (a photo may hold thousands, often in rows and columns sharing x1 or y1): exact boxes
    meet in a dict; for near ones, IoU > DUPLICATE_IOU needs |x1_a - x1_b| < (1 - DUPLICATE_IOU) * width_a
    (the intersection is at most width_a - |dx| wide) and likewise in y, so each box is compared only with the
    boxes of its label in the narrower of its two windows, found by bisection.
    """
    found: list[tuple[int, int, str]] = []
    first_at: dict[tuple[float, ...], int] = {}
    for j, o in enumerate(objs):
        i = first_at.setdefault(tuple(o.bbox_2d), j)
        if i != j:
            a = objs[i]
            same = "the same label" if label_key(a.desc) == label_key(o.desc) else f"labels '{a.desc}' and '{o.desc}'"
            found.append((i, j, f"duplicate box {_fmt_box(o.bbox_2d)} with {same}"))
    by_label: dict[str, list[int]] = {}
    for k, o in enumerate(objs):
        by_label.setdefault(label_key(o.desc), []).append(k)
    slack = 1.0 - DUPLICATE_IOU
    boxes = np.array([o.bbox_2d for o in objs], dtype=np.float64).reshape(-1, 4)
    for label, members in by_label.items():
        windows = []
        for axis in (0, 1):  # members sorted by x1, then by y1, with the sorted coordinates for bisection
            order = sorted(members, key=lambda k: objs[k].bbox_2d[axis])
            windows.append((axis, np.array(order, dtype=np.int64), [objs[k].bbox_2d[axis] for k in order]))
        pairs: set[tuple[int, int]] = set()
        for i in members:
            a = objs[i].bbox_2d
            spans = [(bisect_left(c, a[ax] - slack * (a[ax + 2] - a[ax])), bisect_right(c, a[ax] + slack * (a[ax + 2] - a[ax])))
                     for ax, _, c in windows]
            (ax, order, _), (lo, hi) = min(zip(windows, spans), key=lambda w: w[1][1] - w[1][0])
            other = 1 - ax
            # The window's boxes all at once: boxes sharing x1 and y1 (nested, or a tool that lost positions) put every
            # box in both windows, and a box at a time took a minute for 1,500 of them
            near = order[lo:hi]
            b = boxes[near]
            near = near[(near != i) & (np.abs(b[:, other] - a[other]) <= slack * (a[other + 2] - a[other]))
                        & np.any(b != boxes[i], axis=1)]
            if not near.size:
                continue
            for j, iou in zip(near.tolist(), box_iou(boxes[i], boxes[near]).tolist()):
                if iou > DUPLICATE_IOU and (min(i, j), max(i, j)) not in pairs:
                    pairs.add((min(i, j), max(i, j)))
                    found.append((min(i, j), max(i, j), f"same label '{label}' on nearly the same box (IoU {iou:.2f})"))
    return sorted(found)


def unmatched_objects(first: Sequence[ObjectAnn], second: Sequence[ObjectAnn]) -> tuple[list[int], list[int]]:
    """The indices of `first`'s objects that `second` lacks, and of `second`'s that `first` lacks: one photo's two
    annotation sets compared object by object, each matched at most once to one of the same label on the same box or,
    failing that, on the nearest box above DUPLICATE_IOU (as `duplicate_pairs` calls one object annotated twice).

    Exact copies meet in a dict and only what is left is compared pairwise, per label, with numpy: two copies of a
    photo of thousands of boxes take milliseconds.
    """
    free: dict[tuple[str, tuple[float, ...]], list[int]] = {}
    for i, o in enumerate(first):
        free.setdefault((label_key(o.desc), tuple(o.bbox_2d)), []).append(i)
    left_second = []
    for j, o in enumerate(second):
        same = free.get((label_key(o.desc), tuple(o.bbox_2d)))
        if same:
            same.pop(0)
        else:
            left_second.append(j)
    first_left: dict[str, list[int]] = {}
    for i in sorted(i for kept in free.values() for i in kept):
        first_left.setdefault(label_key(first[i].desc), []).append(i)
    second_left: dict[str, list[int]] = {}
    for j in left_second:
        second_left.setdefault(label_key(second[j].desc), []).append(j)
    unmatched_first, unmatched_second = [], []
    for label, js in second_left.items():
        candidates = first_left.pop(label, [])
        boxes = np.asarray([first[i].bbox_2d for i in candidates], dtype=np.float64).reshape(-1, 4)
        used = np.zeros(len(candidates), dtype=bool)
        for start in range(0, len(js), 256):  # 256 rows of IoU at a time: a few MB however many boxes
            chunk = js[start : start + 256]
            rows = box_iou(np.asarray([second[j].bbox_2d for j in chunk], dtype=np.float64), boxes).reshape(len(chunk), -1)
            for j, row in zip(chunk, rows):
                row = np.where(used, -1.0, row)
                best = int(row.argmax()) if row.size else -1
                if best >= 0 and row[best] > DUPLICATE_IOU:
                    used[best] = True
                else:
                    unmatched_second.append(j)
        unmatched_first += [i for i, u in zip(candidates, used) if not u]
    unmatched_first += [i for left in first_left.values() for i in left]
    return sorted(unmatched_first), sorted(unmatched_second)


def annotation_difference(first: Sequence[ObjectAnn], second: Sequence[ObjectAnn], shown: int = 3) -> str | None:
    """How `second`, a photo's other annotation set, differs from `first` (`unmatched_objects`), in words naming up to
    `shown` boxes of each side; None when they hold the same objects."""
    only_first, only_second = unmatched_objects(first, second)
    if not only_first and not only_second:
        return None

    def named(objs: Sequence[ObjectAnn], indices: list[int]) -> str:
        listed = ", ".join(f"{show_text(objs[i].desc)} {_fmt_box(objs[i].bbox_2d)}" for i in indices[:shown])
        return listed + (f" and {len(indices) - shown} more" if len(indices) > shown else "")

    parts = []
    if only_second:
        parts.append(f"{len(only_second)} of its {boxes(len(second))} {'is' if len(only_second) == 1 else 'are'} not "
                     f"among the kept ones ({named(second, only_second)})")
    if only_first:
        parts.append(f"{len(only_first)} of the {len(first)} kept {'is' if len(only_first) == 1 else 'are'} not among its "
                     f"({named(first, only_first)})")
    return "; ".join(parts)


def folded_copy(how: str, done: str, first: Sequence[ObjectAnn], copy: Sequence[ObjectAnn], kept: str,
                turns: tuple[int, int] | None, again: str) -> tuple[str, bool]:
    """What an importer says of a later copy of a photo it took once (`how`: which photo it is and where it went;
    `done`: 'imported' or 'converted'), and whether its boxes differ from `first`, the ones kept (those of `kept`).
    With `turns` (the EXIF orientations of the one kept and of the copy), a copy shown turned otherwise has its boxes
    in another frame: they are not compared, and count as differing. `again`: what to do once the file is right."""
    said = f"{how}: one photo, {done} once, where twice its boxes would count twice and a split could put it on both sides"
    if turns and turns[0] != turns[1]:
        return (f"{said}; viewers show it turned otherwise (EXIF orientation {turns[1]}, the one kept {turns[0]}), so "
                f"its boxes are in another frame and were not compared: those of {kept} were kept"), True
    difference = annotation_difference(first, copy)
    if difference is None:
        return f"{said}; its boxes are the same as those kept ({boxes(len(copy))})", False
    return (f"{said}; its boxes differ and those of {kept} were kept: {difference}. Which is right cannot be told "
            f"here: {again}"), True


def boxes(n: int) -> str:
    """`n` boxes in words: '1 box', '3 boxes'."""
    return f"{n} box" if n == 1 else f"{n} boxes"


def _probe(path: Path, decode: bool) -> tuple[ImageInfo | str, str | None, np.ndarray | None]:
    """The photo's size, the digest of its image data (a JPEG copy whose EXIF a tool rewrote is the same photo) and its
    print (data/near_copies.py: a copy a tool re-encoded is a near-copy)."""
    info = probe_image(path, decode)
    if isinstance(info, str):
        return info, None, None
    try:
        found = photo_print(path)
    except ImageError:  # its header read, its pixels not: a --no-decode check leaves them to training
        found = None
    return info, photo_digests(path, whole=False)[1], found


def duplicate_photos(rows: list[tuple[Path, int, Sample]], digests: dict[Path, str]) -> list[Problem]:
    """The same photo twice: in one file, or in a training file and the validation file, by path or by content.

    Teachers are chosen from train, so only teachers.jsonl against val.jsonl is a leak there.
    """
    problems = []
    seen: dict[tuple[str, str], tuple[Path, int, str]] = {}  # (kind, path or digest) -> where first seen
    for file, line, sample in rows:
        for image in sample.student.images:
            path = resolve_image(file, image)
            keys = [("path", str(path))] + ([("content", digests[path])] if path in digests else [])
            for kind, key in keys:
                first = seen.setdefault((kind, key), (file, line, image))
                if first == (file, line, image) or first[:2] == (file, line):
                    continue
                how = "the same file" if kind == "path" else f"the same content as {first[2]}"
                if first[0] == file:
                    problems.append(Problem(str(file), line, f"image {image}: {how} at line {first[1]}: the same photo "
                                            "twice, its boxes would count twice (remove one line)"))
                elif {first[0].name, file.name} in ({TRAIN, VAL}, {TEACHERS, VAL}):
                    problems.append(Problem(str(file), line, f"image {image}: {how} in {first[0]} line {first[1]}: a "
                                            "photo in both training and validation data scores training photos as "
                                            "validation (move it to one side)"))
                else:
                    continue
                break  # one message per line: a path repeat is also a content repeat
    return problems


def near_copy_photos(rows: list[tuple[Path, int, Sample]], prints: dict[Path, np.ndarray],
                     digests: dict[Path, str]) -> list[Problem]:
    """Warnings for a photo whose pixels are another's (data/near_copies.py: saved again at another JPEG quality or
    size, as PNG, its EXIF turn written into its pixels, mirrored or turned, made greyscale, darker or lower in
    contrast) on another line of its file, or in a training file and the validation file, naming both and how they
    were compared (`how_alike`): its bytes differ, so `duplicate_photos` passed it, and one photo on both sides scores
    training photos as validation. A warning, not an error: the pixels differ, so whether they are one photo is the
    user's call. One warning a line, naming the first line before it; copies alike in bytes or tiles of one photo are
    `duplicate_photos`' and `split_tiles`' to name."""
    students = [(file, line, sample.student, resolve_image(file, sample.student.image)) for file, line, sample in rows]
    printed = [s for s in students if s[3] in prints]
    named: set[tuple[Path, int]] = set()
    problems = []
    for pair in near_copies([prints[s[3]] for s in printed]):
        (file_a, line_a, a, path_a), (file_b, line_b, b, path_b) = printed[pair.first], printed[pair.second]
        origin = tile_origin(a)
        if (file_b, line_b) in named or path_a == path_b or digests.get(path_a) == digests.get(path_b) or (
                origin is not None and origin == tile_origin(b)):
            continue
        sides = {file_a.name, file_b.name}
        if file_a == file_b:
            where, why = f"line {line_a}", ("one photo on two lines counts its boxes twice (remove one line if they are "
                                            "one photo)")
        elif sides in ({TRAIN, VAL}, {TEACHERS, VAL}):
            where, why = f"{file_a} line {line_a}", ("one photo in both training and validation data scores training "
                                                     "photos as validation (move it to one side: `bbuvl data split` "
                                                     "keeps near-copies on one side)")
        else:
            continue
        named.add((file_b, line_b))
        problems.append(Problem(str(file_b), line_b, f"image {b.image}: its pixels are those of {a.image}"
                                f"{' ' + pair.how if pair.how else ''} at {where} ({how_alike(pair.levels, pair.how)}), "
                                f"{COPY_KINDS} or a second shot of one view: {why}", "warning"))
    return problems


def near_copy_teachers(rows: list[tuple[Path, int, Sample]], prints: dict[Path, np.ndarray],
                       digests: dict[Path, str]) -> list[Problem]:
    """Warnings for a teacher (a sample's own) whose pixels are those of a validation photo, on a training line, or of
    its own student photo (data/near_copies.py): its answer is in the prompt, as `validation_teachers` and
    `teacher_is_student` say of the same file or bytes, which they name (as errors) and this leaves to them. One
    warning a teacher a line, naming the validation photo's file and line; `near_copy_photos` compares students only."""
    held_out = [(file, line, sample.student.image, path) for file, line, sample in rows if file.name == VAL
                if (path := resolve_image(file, sample.student.image)) in prints]
    shown: dict[Path, list[tuple[Path, int, int, str]]] = {}  # a training teacher's photo -> (file, line, index, as written)
    problems = []
    for file, line, sample in rows:
        student = resolve_image(file, sample.student.image)
        for i, teacher in enumerate(sample.teachers):
            path = resolve_image(file, teacher.image)
            if path not in prints:
                continue
            if file.name != VAL:
                shown.setdefault(path, []).append((file, line, i, teacher.image))
            if student in prints and one_photo(path, student, digests) is None:
                # The two alone, compared as every pair is (turned, mirrored, greyscale, darker, less contrast): a
                # student made darker and shown as its own teacher holds its answer as much as one saved again.
                for pair in near_copies([prints[student], prints[path]]):
                    how = f" {pair.how}" if pair.how else ""
                    problems.append(Problem(str(file), line, f"teachers[{i}]: image {teacher.image}: its pixels are "
                                            f"those of the student photo {sample.student.image}{how} "
                                            f"({how_alike(pair.levels, pair.how)}), {COPY_KINDS} or a second shot of "
                                            "one view: its answer would be in its own prompt; choose teachers among "
                                            "the other photos", "warning"))
    teachers = list(shown)
    # Validation photos first: a teacher's earliest near-copy is then one of them whenever it has one.
    for pair in near_copies([prints[v[3]] for v in held_out] + [prints[t] for t in teachers]):
        if pair.first >= len(held_out) or pair.second < len(held_out):
            continue
        val_file, val_line, val_image, val_path = held_out[pair.first]
        path = teachers[pair.second - len(held_out)]
        if one_photo(path, val_path, digests) is not None or path not in shown:
            continue  # the same photo: `validation_teachers`' error
        how = f" {pair.how}" if pair.how else ""
        for file, line, i, image in shown.pop(path):  # the earliest validation photo it copies, named once
            problems.append(Problem(str(file), line, f"teachers[{i}]: image {image}: its pixels are those of {val_image}"
                                    f"{how}, the photo of {val_file} line {val_line}, a validation photo "
                                    f"({how_alike(pair.levels, pair.how)}), {COPY_KINDS} or a second shot of one view: "
                                    "its answer would be in a training prompt, and validation scores a photo the model "
                                    "was shown solved; choose teachers among the training photos", "warning"))
    return problems


def split_tiles(rows: list[tuple[Path, int, Sample]]) -> list[Problem]:
    """Warnings for the tiles of one photo (`data tile`'s ids) in both a training file and the validation file: the
    tiles overlap, and the whole photo kept beside them shows them all, so validation scores what training saw. Each
    tile is a photo of its own, so `duplicate_photos` passed a tiled dataset split tile by tile."""
    first: dict[str, tuple[Path, int]] = {}  # origin id -> the first training line holding a tile of it
    for file, line, sample in rows:
        if file.name != VAL and (origin := tile_origin(sample.student)) is not None:
            first.setdefault(origin, (file, line))
    problems = []
    for file, line, sample in rows:
        if file.name == VAL and (origin := tile_origin(sample.student)) in first:
            where = first[origin]
            problems.append(Problem(str(file), line, f"image {sample.student.image}: a tile of photo '{origin}', which "
                                    f"{where[0]} line {where[1]} holds a tile of too: validation scores what training "
                                    "saw; split the photos before tiling them (`bbuvl data split` keeps a photo's tiles "
                                    "on one side)", "warning"))
    return problems


def validation_teachers(rows: list[tuple[Path, int, Sample]], digests: dict[Path, str]) -> list[Problem]:
    """A validation photo shown as a teacher in a training line (a sample's own teachers), by path or by content: its
    answer is in that training prompt, so validation scores a photo the model was shown solved. `duplicate_photos`
    compares students only, and a teacher pool against val, so this leak passed as "no errors"."""
    held_out: dict[str, tuple[Path, int]] = {}
    for file, line, sample in rows:
        if file.name == VAL:
            path = resolve_image(file, sample.student.image)
            for key in (str(path), digests.get(path)):
                if key is not None:
                    held_out.setdefault(key, (file, line))
    problems = []
    for file, line, sample in rows:
        if file.name == VAL:
            continue
        for i, teacher in enumerate(sample.teachers):
            path = resolve_image(file, teacher.image)
            found = held_out.get(str(path)) or held_out.get(digests.get(path, ""))
            if found is not None:
                problems.append(Problem(str(file), line, f"teachers[{i}]: image {teacher.image} is the photo of "
                                        f"{found[0]} line {found[1]}, a validation photo: its answer would be in a "
                                        "training prompt; choose teachers among the training photos"))
    return problems


def two_languages(rows: list[tuple[Path, int, Sample]], hierarchy: Hierarchy) -> list[Problem]:
    """Warnings for a label written in English (its hierarchy gloss) where the dataset also writes it in Chinese, or
    the other way round: both pass, and the model would learn two names for one part."""
    first: dict[str, tuple[str, bool, Path, int]] = {}  # hierarchy label -> (as written, in English, where) first seen
    problems = []
    for file, line, sample in rows:
        for _, record in sample_records(sample):
            for o in record.objects:
                english = hierarchy.canonical(o.desc) is None and hierarchy.from_english(o.desc) is not None
                label = hierarchy.from_english(o.desc) if english else hierarchy.canonical(o.desc)
                if label is None:
                    continue
                seen = first.setdefault(label, (o.desc, english, file, line))
                if seen[1] != english:
                    problems.append(Problem(str(file), line, f"label {show_text(o.desc)} is {show_text(seen[0])} (written "
                                            f"at {seen[2]} line {seen[3]}) in {'English' if english else 'Chinese'}: the "
                                            "model would learn two names for one part; write the dataset in one "
                                            "language (bbuvl data convert --lang)", "warning"))
                    first[label] = (o.desc, english, file, line)  # one warning per switch, not per object
    return problems


def case_twins(rows: list[tuple[Path, int, Sample]]) -> list[Problem]:
    """Warnings for photos whose paths differ only in letter case or in Unicode composition (NFC/NFD): one file on
    macOS (and in letter case on Windows), so a copy of the dataset there keeps one of them for both."""
    first: dict[str, tuple[Path, Path, int, str]] = {}  # name_key -> (path, file, line, image) that had it first
    problems = []
    for file, line, sample in rows:
        for _, record in sample_records(sample):
            for image in record.images:
                path = resolve_image(file, image)
                other = first.setdefault(name_key(path.as_posix()), (path, file, line, image))
                if other[0] != path:
                    where = f"line {other[2]}" if other[1] == file else f"{other[1]} line {other[2]}"
                    this, that = names_apart(image, other[3])
                    problems.append(Problem(str(file), line, f"image {this}: differs from {that} ({where}) only in "
                                            f"{_twin_difference(path.as_posix(), other[0].as_posix())}, where a copy "
                                            "keeps one of the two photos", "warning"))
    return problems


def _twin_difference(a: str, b: str) -> str:
    """What tells apart two names `name_key` takes for one, and where they are one file: letter case (Windows and
    macOS), Unicode composition (macOS, whose disks fold it; Windows keeps both), or both (macOS)."""
    if file_name_key(a) == file_name_key(b):
        return "Unicode composition (NFC/NFD): one file on macOS"
    if a.casefold() == b.casefold():
        return "letter case: one file on Windows and macOS"
    if file_name_key(a).casefold() != file_name_key(b).casefold():  # a dotless ı beside an i or I: name_key
        return "letter case, as Windows compares it (a dotless ı and an I): one file on Windows"
    return "letter case and Unicode composition (NFC/NFD): one file on macOS"


def teacher_is_student(file: Path, sample: Sample, digests: dict[Path, str]) -> str | None:
    """What is wrong when one of a sample's teachers is its student photo (the same file, or the same bytes): the
    prompt then holds the answer, and the model learns to copy it instead of looking."""
    student = resolve_image(file, sample.student.image)
    for i, teacher in enumerate(sample.teachers):
        # One file under another spelling ('..', a link) is the student's too: compared as paths, it passed
        if (same := one_photo(resolve_image(file, teacher.image), student, digests)) is not None:
            how = SAME_FILE if same == SAME_FILE else f"the same content as {sample.student.image}"
            return (f"teachers[{i}]: image {teacher.image} is the student photo ({how}): its answer would be in its "
                    "own prompt; choose teachers among the other photos")
    return None


def empty_file_problem(path: Path, file: Path) -> Problem:
    """What a dataset file with no photo in it is ("ok" for one would read as a clean dataset): an error, or a warning
    for a folder's optional val/teachers file; `path` is what was checked (the file itself, or its folder)."""
    optional = path.is_dir() and file.name != TRAIN
    return Problem(str(file), 0, "no photos: the file is empty or holds only blank lines",
                   "warning" if optional else "error")


RELATIVE_SIDE = 1000  # the 0-1000 frame Qwen3-VL answers in (data/coords.py), which exports often write boxes in
# A photo this much larger than the relative frame on a side leaves boxes room past 1000 there: a file of them whose
# boxes all stop at 1000 is in that frame (0-1000 boxes on smaller photos lie outside them, and say so themselves).
LARGE_SIDE = 1.25 * RELATIVE_SIDE
# Boxes on such photos before their all stopping at 1000 says something: a pixel box on a 1792x1344 photo stays within
# 1000 on both axes about 4 times in 10, so 8 of them all within it 1 time in 1,000 or so.
FRAME_EVIDENCE = 8
OUTSIDE_SHARE = 0.25  # of a file's boxes outside their photo, before 0-1000 boxes are named the likely cause
NO_FRAME_OPTION = ("fix the tool that wrote the file, or rewrite bbox_2d before training (no `bbuvl data` option "
                   "rewrites them; bbox_2d is [x1, y1, x2, y2] in the photo's own pixels: README.md, \"Dataset folder\")")


def _swapped(box: Sequence[float]) -> list[float]:
    return [box[1], box[0], box[3], box[2]]


def _frame_problem(boxes: list[tuple[int, ImageRecord, Sequence[float]]]) -> tuple[int, str] | None:
    """(line, why) when one file's boxes look written in another convention than pixels [x1, y1, x2, y2] of their photo:
    x and y swapped, or 0-1000 of each side; None when nothing points there."""
    outside = [(line, record, box) for line, record, box in boxes if not box_inside(box, record.size, BOX_TOLERANCE)]
    if outside and (len(outside) > 1 or len(boxes) == 1) and all(
            record.width != record.height and box_inside(_swapped(box), record.size, BOX_TOLERANCE)
            for _, record, box in outside):
        return outside[0][0], (f"{len(outside)} of this file's {len(boxes)} boxes lie outside their photo, and every one "
                               "of them fits inside once x and y are swapped: the file likely writes [y1, x1, y2, x2]; "
                               "bbuvl reads [x1, y1, x2, y2], x across the photo; " + NO_FRAME_OPTION)
    if not all(0 <= v <= RELATIVE_SIDE for _, _, box in boxes for v in box):
        return None
    if len(outside) >= max(2, OUTSIDE_SHARE * len(boxes)):
        return outside[0][0], (f"{len(outside)} of this file's {len(boxes)} boxes lie outside their photo, and every "
                               f"coordinate of the file is within 0-{RELATIVE_SIDE}: its boxes are likely written 0-"
                               f"{RELATIVE_SIDE} of each side (Qwen3-VL's answers, some exports), not in the photo's "
                               f"pixels: x times width/{RELATIVE_SIDE}, y times height/{RELATIVE_SIDE} gives pixels; "
                               + NO_FRAME_OPTION)
    large = [(line, record) for line, record, _ in boxes if max(record.size) >= LARGE_SIDE]
    if len(large) >= FRAME_EVIDENCE:
        widest = max((record.size for _, record in large), key=lambda size: size[0] * size[1])
        return large[0][0], (f"every coordinate of this file's {len(boxes)} boxes is within 0-{RELATIVE_SIDE}, though "
                             f"{len(large)} of them are on photos up to {widest[0]}x{widest[1]}, where boxes in pixels "
                             f"would reach past {RELATIVE_SIDE}: they are likely written 0-{RELATIVE_SIDE} of each side "
                             "(Qwen3-VL's answers, some exports), not in the photo's pixels, and each one lands in the "
                             f"photo's top-left corner: x times width/{RELATIVE_SIDE}, y times height/{RELATIVE_SIDE} "
                             "gives pixels; " + NO_FRAME_OPTION)
    return None


def box_frame_problems(rows: list[tuple[Path, int, Sample]]) -> list[Problem]:
    """A warning per file whose boxes look written in another convention than pixels [x1, y1, x2, y2] of their photo:
    x and y swapped (every box outside its photo fits once swapped), or 0-1000 of each side (outside boxes all within
    0-1000, or on large photos no box past 1000). Each outside box is an error of its own, "lies outside the image",
    which names no cause; on photos larger than 1000 pixels a side, 0-1000 boxes all fit, and nothing was said."""
    per_file: dict[Path, list[tuple[int, ImageRecord, Sequence[float]]]] = {}
    for file, line, sample in rows:
        for _, record in sample_records(sample):
            per_file.setdefault(file, []).extend((line, record, o.bbox_2d) for o in record.objects)
    return [Problem(str(file), line, why, "warning") for file, boxes in per_file.items() if boxes
            and (found := _frame_problem(boxes)) is not None for line, why in [found]]


@dataclass
class ProbedPhotos:
    """What each photo of a dataset gave: its size (or why it cannot be used), the digest of its image data and its
    print (data/near_copies.py), for the checks across lines (`dataset_problems`)."""

    infos: dict[Path, ImageInfo | str]
    digests: dict[Path, str]
    prints: dict[Path, np.ndarray]


def probe_photos(images: Sequence[Path], decode: bool = True, workers: int | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> ProbedPhotos:
    """Probe every photo once, on a thread pool (Pillow releases the GIL while decoding) of `workers` threads, at most
    one per usable core (data/workers.py); `on_progress(done, total)` is called after each photo."""
    probed = ProbedPhotos({}, {}, {})
    # Automatic: a thread per core, at most 8 (beyond that the disk, not the decoder, is what waits).
    threads = bound_workers(workers) if workers else min(8, worker_limit())
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for done, (p, (info, digest, found)) in enumerate(zip(images, pool.map(lambda p: _probe(p, decode), images)), 1):
            probed.infos[p] = info
            if digest is not None:
                probed.digests[p] = digest
            if found is not None:
                probed.prints[p] = found
            if on_progress:
                on_progress(done, len(images))
    return probed


def dataset_problems(rows: list[tuple[Path, int, Sample]], probed: ProbedPhotos, hierarchy: Hierarchy) -> list[Problem]:
    """The checks across lines and files, which no single record shows: the same photo twice or on both sides of the
    split, near-copies, validation photos shown as teachers, a teacher that is its student, tiles of one photo on both
    sides, one label in two languages, names one letter case apart, and boxes written in another convention than the
    photo's pixels. `bbuvl data check` and `bbuvl doctor data` both run this one list, so they cannot drift apart."""
    digests, prints = probed.digests, probed.prints
    return [*duplicate_photos(rows, digests), *near_copy_photos(rows, prints, digests),
            *validation_teachers(rows, digests), *near_copy_teachers(rows, prints, digests), *split_tiles(rows),
            *two_languages(rows, hierarchy), *case_twins(rows),
            *[Problem(str(file), line, why) for file, line, sample in rows
              if (why := teacher_is_student(file, sample, digests)) is not None],
            *box_frame_problems(rows)]


def check_dataset(
    path: Path,
    hierarchy: Hierarchy | None = None,
    decode_images: bool = True,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Problem]:
    """Every problem in a JSONL dataset or a dataset folder, in file and line order.

    Images are probed with `workers` threads (`probe_photos`); `on_progress(done, total)` is called after each image.
    """
    path = Path(path)
    hierarchy = hierarchy or Hierarchy.load()
    files, problems = dataset_files(path)

    rows: list[tuple[Path, int, Sample]] = []
    for file in files:
        lines = 0
        try:
            for row in iter_dataset(file):
                lines += 1
                if row.error is not None:
                    problems.append(Problem(row.error.path, row.error.line, row.error.message))
                else:
                    rows.append((file, row.line, row.sample))
        except DatasetError as e:  # the file itself cannot be opened, or is no text
            problems.append(Problem(e.path, e.line, e.message))
            continue
        if lines == 0:
            problems.append(empty_file_problem(path, file))

    images = sorted({resolve_image(f, img) for f, _, s in rows for _, r in sample_records(s) for img in r.images})
    probed = probe_photos(images, decode_images, workers, on_progress)
    infos = probed.infos
    problems += dataset_problems(rows, probed, hierarchy)

    for file, line, sample in rows:
        for prefix, record in sample_records(sample):
            for image in record.images:
                info = infos[resolve_image(file, image)]
                msg = f"image {image}: {info}" if isinstance(info, str) else check_size(record, image, info)
                if msg:
                    problems.append(Problem(str(file), line, prefix + msg))
                if (unportable := portability_problem(image)) is not None:
                    problems.append(Problem(str(file), line, f"{prefix}image {image}: {unportable}", "warning"))
                if not isinstance(info, str) and info.conversion:
                    problems.append(Problem(str(file), line, f"{prefix}image {image}: mode needed more than a plain RGB "
                                            f"conversion: {info.conversion}; check that it looks right", "warning"))
            for msg, severity in check_objects(record, hierarchy):
                problems.append(Problem(str(file), line, prefix + msg, severity))

    order = {str(f): i for i, f in enumerate(files)}
    problems.sort(key=lambda p: (order.get(p.file, -1), p.line))  # stable: per-line order is kept
    return problems
