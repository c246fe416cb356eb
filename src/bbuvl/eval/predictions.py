"""Prediction files (what `bbuvl predict` writes) and pairing their lines with ground-truth photos.

One line per image, read by infer/prediction_lines.py (as predict reads its own file when it resumes it).

`image` names the photo as the predict input did: relative to the input folder, or as the input JSONL
writes it (relative to that file's folder, or absolute). The manifest beside the file (infer/output.py)
says which input that was; `align_predictions` pairs lines with ground truth by the photo's path.
"""

from __future__ import annotations

import os
import shlex
from contextlib import suppress
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from bbuvl.data.check import ImageInfo, check_size, probe_image
from bbuvl.data.digests import FileDigest, file_digest
from bbuvl.data.schema import DatasetError, ImageRecord, iter_json_lines, read_lines, resolve_image
from bbuvl.data.text import file_name_key
from bbuvl.eval.collector import collector_paused
from bbuvl.infer.output import Manifest, input_root, manifest_path, read_manifest
from bbuvl.infer.prediction_lines import PredictionLine, prediction_line
from bbuvl.infer.resume_key import UNREADABLE, photo_changed
from bbuvl.paths import real_path


def predictions_manifest(pred: str | Path) -> Manifest | None:
    """The manifest beside predictions `pred` (infer/output.py's `read_manifest`), read once while its file is
    unchanged: eval asks for it in six places, and one of 10,000 photos (1.7 MB of their digests) takes 0.2 s to read.
    `pred` a link with no manifest beside it: the one beside the file it links to."""
    if Path(pred).is_symlink() and not os.path.lexists(manifest_path(Path(pred))):
        # Predict writes its manifest beside the file: read through a link (`latest.jsonl`) the predictions were taken
        # for another tool's, judged by the config's defaults with no note, and viz looked for their photos beside it.
        pred = real_path(pred)
    try:
        st = os.stat(manifest_path(Path(pred)))
    except OSError:
        return read_manifest(Path(pred))  # none, or one its reader names
    return _manifest_as_stated(str(pred), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@lru_cache(maxsize=8)
def _manifest_as_stated(pred: str, *stat: int) -> Manifest | None:
    return read_manifest(Path(pred))


def predictions_root(pred: str | Path) -> Path:
    """The folder a predictions file's photo names are relative to (infer/output.py's `prediction_root`), its
    manifest read through `predictions_manifest`."""
    manifest = predictions_manifest(pred)
    return input_root(manifest.input) if manifest is not None else real_path(pred).parent


def read_predictions(path: str | Path) -> list[PredictionLine]:
    """Read a prediction JSONL; a malformed line raises DatasetError naming file:line."""
    with collector_paused():
        return [prediction_line(data, Path(path), no) for no, data in iter_json_lines(path, "predictions")]


@dataclass
class Alignment:
    """Prediction lines paired with ground-truth records.

    predictions[i] is the line for records[i], None when no line names that photo.
    """

    predictions: list[PredictionLine | None]
    unmatched: list[PredictionLine] = field(default_factory=list)  # lines naming no ground-truth photo
    repeated: list[PredictionLine] = field(default_factory=list)  # earlier lines of a photo a later line paired with

    def notes(self) -> list[str]:
        """Sentences for the user about anything that did not pair cleanly."""
        out = []
        missing = sum(p is None for p in self.predictions)
        if missing:
            out.append(f"{missing} ground-truth photo(s) have no prediction line: every object in them counts as missed")
        if self.unmatched:
            ex = ", ".join(f"line {p.line}: {p.image}" for p in self.unmatched[:3])
            out.append(f"{len(self.unmatched)} prediction line(s) name photos that are not in the ground truth "
                       f"and were left out ({ex})")
        if self.repeated:
            ex = ", ".join(f"{p.image} (line {p.line})" for p in self.repeated[:3])
            out.append(f"{len(self.repeated)} prediction line(s) name a photo a later line names again ({ex}): the last "
                       "line of each photo was used, as `bbuvl predict` keeps it when it resumes the file")
        return out


def photo_key(image: str, root: Path) -> tuple[str, str | None]:
    """A photo name's normalised absolute path, and its path inside `root` (None when it lies outside), spelt as given.

    Neither resolves symbolic links: a link is a photo of its own name, as `bbuvl predict` names it. Letters are kept
    as composed: `PhotoIndex` compares names exactly first and in NFC (`file_name_key`) only after.
    """
    folder = str(root)
    absolute = os.path.normpath(os.path.join(folder, image))
    inside = os.path.relpath(absolute, folder)
    return absolute, None if inside == ".." or inside.startswith(".." + os.sep) else Path(inside).as_posix()


@dataclass
class PhotoIndex:
    """Ground-truth records by their photos' paths: exact, and in NFC for a line whose name no record spells exactly.

    A copy made on macOS names `é` decomposed (NFD) where the ground truth may compose it: one photo, found by NFC.
    But a Linux folder may hold `café.jpg` composed and decomposed, two photos: folded to NFC first, the two records
    were one, and each line paired with the wrong one.
    """

    exact: dict[str, int] = field(default_factory=dict)
    spellings: dict[str, list[int]] = field(default_factory=dict)  # NFC of a path -> the records of its spellings

    def add(self, path: str | None, index: int) -> None:
        """Index `path` (nothing for None) for record `index`, unless an earlier record has it spelt exactly so."""
        if path is not None and self.exact.setdefault(path, index) == index:
            found = self.spellings.setdefault(file_name_key(path), [])
            if index not in found:
                found.append(index)

    def find(self, path: str | None) -> int | None:
        """The record `path` names: spelt exactly, else in NFC when the photos of one record alone have its spelling."""
        if path is None:
            return None
        if path in self.exact:
            return self.exact[path]
        found = self.spellings.get(file_name_key(path), [])
        return found[0] if len(found) == 1 else None


def align_predictions(
    records: list[ImageRecord], gt_path: str | Path, predictions: list[PredictionLine], pred_path: str | Path | None = None,
) -> Alignment:
    """Pair each ground-truth record with the prediction line naming the same photo.

    A line names a photo relative to its own dataset (`predictions_root`: predict's input folder or JSONL), a
    record relative to the ground-truth JSONL's folder. They pair when both name one file, or the same path inside
    their datasets (predictions made on a copy of the dataset elsewhere); names spelt exactly alike first, then alike
    in NFC (`PhotoIndex`). File names alone never pair: two
    folders may both hold an IMG_0001.jpg. A paired line made on a photo of another size, or of other content than
    its manifest recorded (`check_same_photos`), is an error naming both: it was not made on this photo. Without
    `pred_path`, line names are taken relative to the ground truth. Records naming one photo twice raise
    DatasetError (`index_ground_truth`).
    """
    gt_root = real_path(gt_path).parent
    pred_root = predictions_root(pred_path) if pred_path is not None else gt_root
    by_path, by_inside = index_ground_truth(records, gt_path)
    result = Alignment(predictions=[None] * len(records))
    for p in predictions:
        found = _record_of(p, pred_root, by_path, by_inside)
        if found is None:
            result.unmatched.append(p)
            continue
        record = records[found]
        if p.width and p.height and (p.width, p.height) != record.size:
            raise DatasetError(pred_path or "predictions", p.line, _size_mismatch(p, record, found, gt_path))
        if result.predictions[found] is not None:
            # The later line wins, as `bbuvl predict` keeps it when it resumes the file (infer/output.py): the
            # same file scores alike before and after a resume.
            result.repeated.append(result.predictions[found])
        result.predictions[found] = p
    if pred_path is not None:
        check_same_photos(records, gt_path, result, pred_path)
    if predictions and records and len(result.unmatched) == len(predictions):
        raise DatasetError(pred_path or "predictions", predictions[0].line, (
            f"no prediction line names a photo of {gt_path} (none of its {len(predictions)}; this one names "
            f"{predictions[0].image}, relative to "
            f"{pred_root}); lines pair with records by the photo's path inside each dataset: predict on the ground "
            f"truth (bbuvl predict -i {gt_path}) or on its images folder"))
    return result


def read_ground_truth(path: str | Path) -> list[ImageRecord]:
    """The records of ground truth `path`; DatasetError naming the file and both lines when two name one photo."""
    rows = read_lines(path)
    records = [sample.student for _, sample in rows]
    index_ground_truth(records, path, [line for line, _ in rows])
    return records


def index_ground_truth(records: list[ImageRecord], gt_path: str | Path,
                       lines: list[int] | None = None) -> tuple[PhotoIndex, PhotoIndex]:
    """Records indexed by their photo's path and by its path inside the dataset (`align_predictions` pairs lines
    through both); DatasetError at `gt_path`, naming both `lines` (else both record numbers), when two name one photo.

    A prediction line pairs with one record of a photo: the other's objects all counted as missed, and which record
    that was followed the file's order, so the same lines scored otherwise reordered (docs/eval.md, "Ties").
    """
    gt_root = real_path(gt_path).parent
    by_path, by_inside = PhotoIndex(), PhotoIndex()
    for i, r in enumerate(records):
        absolute, inside = photo_key(r.image, gt_root)
        first = by_path.exact.get(absolute)
        if first is None:
            first = _same_photo_as(by_path, records, gt_path, absolute, i)
        if first is not None:
            raise DatasetError(gt_path, lines[i] if lines else 0, _named_twice(records, lines, first, i))
        by_path.add(absolute, i)
        by_inside.add(inside, i)
    return by_path, by_inside


def _named_twice(records: list[ImageRecord], lines: list[int] | None, first: int, repeat: int) -> str:
    """Why ground truth naming one photo in records `first` and `repeat` is refused, naming both as the file does."""
    where = (f"line {lines[first]}" if lines else f"record {first + 1}")
    also = "" if lines else f" (record {repeat + 1})"
    spelt = "" if records[first].image == records[repeat].image else f" (named {records[first].image} there)"
    return (f"image {records[repeat].image}{also}: the same photo as {where}{spelt}; a prediction pairs with one "
            "line of a photo, so which of the two is scored, and which counts every object as missed, would follow "
            "the lines' order: keep one line per photo (bbuvl data check lists every repeat)")


def _record_of(line: PredictionLine, pred_root: Path, by_path: PhotoIndex, by_inside: PhotoIndex) -> int | None:
    """The ground-truth record a line names: by its file, else by its path inside the dataset; exact names first."""
    absolute, inside = photo_key(line.image, pred_root)
    for index, key in ((by_path.exact, absolute), (by_inside.exact, inside)):
        if key is not None and key in index:
            return index[key]
    found = by_path.find(absolute)
    return found if found is not None else by_inside.find(inside)


def _same_photo_as(by_path: PhotoIndex, records: list[ImageRecord], gt_path: str | Path, absolute: str,
                   index: int) -> int | None:
    """The earlier record whose photo is record `index`'s (at `absolute`) under a name spelt otherwise in composition
    (one file found by NFC, or a disk that folds composition, as macOS does); None when none is."""
    earlier = by_path.spellings.get(file_name_key(absolute), [])
    if not earlier:
        return None
    photo = resolve_image(gt_path, records[index].image)
    for i in earlier:
        other = resolve_image(gt_path, records[i].image)
        with suppress(OSError):
            if other == photo or os.path.samefile(other, photo):
                return i
    return None


def _size_mismatch(p: PredictionLine, record: ImageRecord, index: int, gt_path: str | Path) -> str:
    """Why a line predicted at another size than its ground-truth record says: another photo, or (when the record's
    own photo is the predicted size) a record whose width/height are wrong, which predicting again would not mend."""
    photo = resolve_image(gt_path, record.image)
    info = probe_image(photo, decode=False) if photo.is_file() else None
    if isinstance(info, ImageInfo) and info.upright == (p.width, p.height):
        return (f"ground-truth record {index + 1} of {gt_path}: {check_size(record, record.image, info)}, the size "
                f"{p.image} was predicted at: the record's width/height are wrong, and its boxes may be in another "
                f"frame; fix them (bbuvl data check {gt_path} lists every such record)")
    return (f"photo {p.image} was predicted at {p.width}x{p.height}, but ground-truth photo {record.image} "
            f"({gt_path}, record {index + 1}) is {record.size[0]}x{record.size[1]}: they share a path inside their "
            f"datasets but are not the same photo; predict on the ground truth's own photos (bbuvl predict -i {gt_path})")


@dataclass
class PredictedPhotos:
    """What the manifest beside a predictions file says of the photos its lines were predicted on."""

    manifest: Manifest
    root: Path  # where the lines' photo names are resolved (`predictions_root`)
    recorded: dict[str, FileDigest]  # by name, as the manifest recorded them (empty in a manifest without digests)

    @classmethod
    def read(cls, pred_path: str | Path) -> "PredictedPhotos | None":
        """The manifest beside `pred_path` read; None without one (another tool's file)."""
        manifest = predictions_manifest(pred_path)
        if manifest is None:
            return None
        recorded = {d.name: d for d in manifest.key.photos} if manifest.key is not None else {}
        return cls(manifest, input_root(manifest.input), recorded)

    def digest(self, image: str) -> FileDigest | None:
        """The digest of the photo a line was predicted on: as the manifest recorded it, else (a manifest without
        digests) of the file there now; None when unknown."""
        if self.manifest.key is not None:
            found = self.recorded.get(image)
            return found if found is not None and found.sha256 != UNREADABLE else None
        try:
            return file_digest(self.root / image, image)
        except OSError:
            return None

    def differs(self, image: str, photo: Path) -> bool:
        """Whether `photo` has other content than the photo the line naming `image` was predicted on; False when
        either is unknown or unread (left to the rest of the reader). `photo` is trusted by its stat while it is the
        very file recorded, unchanged (data/digests.py)."""
        return photo_changed(photo, image, self.digest(image))


def check_same_photos(records: list[ImageRecord], gt_path: str | Path, alignment: Alignment, pred_path: str | Path) -> None:
    """DatasetError when a paired line was predicted on a photo whose content differs from its ground-truth photo.

    Two synthetic datasets (or two sites' exports) name their photos alike, at the same size: only the content tells
    them apart. The manifest beside `pred_path` records each predicted photo's SHA-256 (infer/resume_key.py); an older
    manifest without it is compared with the predicted photo as it is on disk now. A file without a manifest (another
    tool's) is not checked. Photos unread at either end are left to the rest of eval. A ground-truth photo that is the
    very file predicted, unchanged since (same stat), is not hashed again (data/digests.py).
    """
    photos = PredictedPhotos.read(pred_path)
    if photos is None:
        return
    manifest = photos.manifest
    for i, (record, line) in enumerate(zip(records, alignment.predictions)):
        photo = resolve_image(gt_path, record.image)
        if line is None or not photos.differs(line.image, photo):
            continue
        if real_path(photos.root / line.image) == real_path(photo):
            # `predict -i GT` alone, as said for another dataset, was refused: the output holds another input's lines.
            raise DatasetError(pred_path, line.line, (
                f"photo {line.image} ({photo}) changed since it was predicted (its SHA-256 in "
                f"{manifest_path(Path(pred_path)).name}): these lines hold what the model found in the photo it "
                f"replaced; predict again, {predict_again(manifest, pred_path)}, and evaluate those"))
        raise DatasetError(pred_path, line.line, (
            f"photo {line.image} was predicted from {manifest.input}, whose photo of that name has other content "
            f"than ground-truth photo {record.image} ({gt_path}, record {i + 1}): these predictions were made on "
            f"other photos (another dataset, or photos changed since); predict on the ground truth's own photos "
            f"(bbuvl predict -i {gt_path})"))


def predict_again(manifest: Manifest, pred: str | Path) -> str:
    """The command that predicts `pred` again over photos changed since, in words: its own input, checkpoint and mode,
    replacing the file (a resume is refused: the input's content is part of what its lines are of)."""
    model = f"-c {shlex.quote(manifest.checkpoint)} " if manifest.checkpoint else ""
    return (f"with the options it was made with (bbuvl predict {model}-i {shlex.quote(manifest.input)} -o "
            f"{shlex.quote(str(pred))} --mode {manifest.mode} --overwrite)")


FRAME_SLACK = 0.05  # a box may overshoot its photo a little (a model's edge, rounding) before it is named


def beyond_frame_note(records: list[ImageRecord], alignment: Alignment, pred_path: str | Path | None) -> list[str]:
    """A note when predicted boxes reach more than FRAME_SLACK of a side beyond their photo: boxes written in another
    frame (0-1000, or a resized photo's pixels) score as misses and extras, and nothing else would say why."""
    count = boxes = photos = 0
    first = ""
    for record, p in zip(records, alignment.predictions):
        if p is None or not p.objects:
            continue
        w, h = record.size
        lo_x, lo_y, hi_x, hi_y = -FRAME_SLACK * w, -FRAME_SLACK * h, (1 + FRAME_SLACK) * w, (1 + FRAME_SLACK) * h
        out = [o["bbox_2d"] for o in p.objects
               if o["bbox_2d"][0] < lo_x or o["bbox_2d"][1] < lo_y or o["bbox_2d"][2] > hi_x or o["bbox_2d"][3] > hi_y]
        boxes += len(p.objects)
        if out:
            count += len(out)
            photos += 1
            first = first or (f"{pred_path or 'predictions'}:{p.line}: {p.image} is {w}x{h}, box "
                              f"[{', '.join(f'{v:g}' for v in out[0])}]")
    if not count:
        return []
    return [f"{count} of {boxes} predicted boxes, in {photos} photo(s), reach more than {FRAME_SLACK:.0%} of a side "
            f"beyond their photo ({first}): boxes are read in the photo's pixels, so boxes written in another frame "
            "(0-1000, or a resized photo's pixels) count as extra and their objects as missed"]
