"""Boxes drawn on photos into PNGs: a dataset's ground truth, a predictions file, or both side by side."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

from bbuvl.atomic import atomic_folder, name_or_temporary, remove_path, save_atomic, temporary_of
from bbuvl.data.input_paths import spelling_note
from bbuvl.data.library_outputs import holding_outputs
from bbuvl.data.faults import Faults
from bbuvl.data.schema import DatasetError, iter_json_lines, read_records, require_photos, resolve_image
from bbuvl.data.text import label_key
from bbuvl.eval.draw import LabelNamer, compare_picture, file_stem, prediction_picture, prediction_title
from bbuvl.eval.fonts import FontChoice
from bbuvl.eval.judging import verdict_setup
from bbuvl.eval.matching import match_image
from bbuvl.eval.predictions import (PredictedPhotos, PredictionLine, align_predictions, predict_again, predictions_root,
                                   read_ground_truth, read_predictions)
from bbuvl.infer.output import manifest_path
from bbuvl.infer.verdict import FramedThresholds
from bbuvl.outputs import LEDGER, Claim, output_path, written_here
from bbuvl.paths import real_path


# The names a run writes into its folder (`NNNN_<photo>.png`, `_prediction_pictures`/`_compared_pictures`), and their
# temporaries: the pictures of one run, which another run's never stand beside.
_PICTURE = re.compile(name_or_temporary(r"\d{4,}_[^/]+\.png"))


VIZ = "viz"  # the writer the pictures are recorded under, in their folder's own ledger


def written_by_viz(name: str) -> bool:
    """Whether `name`, relative to a viz folder, is one a run of `draw_pictures` writes there."""
    return _PICTURE.fullmatch(name) is not None


def viz_pictures(folder: str | Path) -> Callable[[str], bool]:
    """Which names in `folder` are pictures a run of `draw_pictures` drew there: those its own ledger records as drawn,
    unchanged (`_record_pictures`). A user's `0003_site.png` in a folder viz was given with --overwrite is named like
    one, and read by the name alone it was replaced with the folder, or dropped as an earlier run's picture. A folder
    whose ledger records none (drawn by an earlier version) is read by the names, as it was."""
    recorded = frozenset(name for name in written_here(output_path(folder), VIZ) if written_by_viz(name))
    if not recorded and not os.path.isfile(os.path.join(folder, LEDGER)):
        return written_by_viz
    return lambda name: name in recorded or temporary_of(name) in recorded


def is_prediction_file(path: str | Path) -> bool:
    """True when the first line of `path` is a `bbuvl predict` output line rather than a dataset record."""
    for _, first in iter_json_lines(path):  # a line that is no JSON is the dataset reader's to report
        return isinstance(first, dict) and isinstance(first.get("image"), str) and "images" not in first
    return False


def draw_pictures(input: str | Path, out_dir: str | Path, font: FontChoice, name: LabelNamer,
                  pred: str | Path | None = None, limit: int = 50, iou: float = 0.5,
                  unreadable: list[str] | None = None, replace: bool = False, hierarchy: str | Path | None = None,
                  review: float | None = None, fail: float | None = None, notes: list[str] | None = None,
                  drop_earlier: bool = False) -> int:
    """Draw up to `limit` photos of `input` (dataset or predictions JSONL) into `out_dir`; returns how many.

    Faults are framed as the report frames them (eval/draw.py): every fault of the ground truth, and the predicted
    boxes the photo's verdict counts, judged as `bbuvl eval` judges the predictions (eval/judging.py `verdict_setup`:
    `hierarchy`, `review` and `fail` when given, else those of the checkpoint that wrote them, else the config's).
    Where eval would refuse to judge them (their checkpoint changed since, and not all three were given) the boxes are
    still drawn, no predicted fault framed, and `notes` (when given) gets why, as it gets eval's own notes.

    A photo that cannot be read is drawn on a grey placeholder naming why, and `unreadable` (when given) gets
    why (naming the photo) for it, so that the caller can say so too. The pictures go beside what `out_dir` holds;
    with `replace`, or where there is no `out_dir` yet, they fill a new folder that takes its name once all are drawn.
    With `drop_earlier` the pictures an earlier run drew there (as the folder's own ledger records them,
    `viz_pictures`) that this run did not draw again are removed once it has drawn its own (never in a folder holding
    photos it draws): `bbuvl viz` drawing beside the other files of a folder it wrote before. The pictures drawn are
    recorded there in turn.

    Refused (OutputConflict) before anything is drawn when `out_dir` is `input` or `pred`, holds one (`replace` would
    take it with the folder) or lies inside one, or another process writes or reads it (data/library_outputs.py)."""
    with holding_outputs("viz", {"input": input, "pred": pred}, folders=[out_dir]):
        return _draw_held(Path(input), Path(out_dir), font, name, pred, limit, iou, unreadable, replace,
                          Judging(hierarchy, review, fail, [] if notes is None else notes), drop_earlier)


@dataclass
class Judging:
    """What judges the drawn predictions' faults, as given (`draw_pictures`); `of` finds the rest."""

    hierarchy: str | Path | None = None
    review: float | None = None
    fail: float | None = None
    notes: list[str] = field(default_factory=list)  # what judged the drawn faults, or why none was judged

    def of(self, pred: str | Path | None) -> tuple[Faults, FramedThresholds | None]:
        """The faults, and the thresholds that judge predictions `pred` (None: no predictions to judge)."""
        if pred is None:
            return Faults.load(self.hierarchy), None
        try:
            judged = verdict_setup(pred, self.hierarchy, self.review, self.fail)
        except ValueError as refused:
            # Pictures are for looking: a checkpoint changed since the predictions leaves their boxes worth seeing,
            # only their verdict unknown, where eval has numbers to refuse.
            self.notes.append(f"no predicted fault framed: {refused}")
            return Faults.load(self.hierarchy), None
        self.notes.extend(judged.notes)
        return judged.faults, judged.thresholds


def _draw_held(input: Path, out_dir: Path, font: FontChoice, name: LabelNamer, pred: str | Path | None, limit: int,
               iou: float, unreadable: list[str] | None, replace: bool, judging: Judging,
               drop_earlier: bool = False) -> int:
    """`draw_pictures`, its folder held."""
    unreadable = [] if unreadable is None else unreadable
    if is_prediction_file(input):
        if pred is not None:
            raise ValueError(f"{input} is already a predictions file; pass the dataset as INPUT to compare with --pred")
        pictures = _prediction_pictures(input, font, name, limit, *judging.of(input))
    else:
        pictures = _compared_pictures(input, pred, font, name, limit, iou, *judging.of(pred))
    if not any(os.path.isfile(photo) for _, photo, _ in pictures):
        # Every picture was a grey placeholder, exit 0: a dataset or predictions file moved without its photos.
        first = pictures[0][1]
        raise ValueError(f"{input}: none of the {len(pictures)} photo(s) to draw is there (the first: "
                         f"{first}{spelling_note(first)}); nothing drawn. Give the file where its photos are, or put the photos "
                         "where it names them")
    drawn = [file for file, _, _ in pictures]
    dropped: list[str] = []
    with _picture_folder(out_dir, replace) as folder:  # only once there is something to draw
        earlier = viz_pictures(folder)  # read before this run's pictures are drawn over theirs
        for file, _, draw in pictures:
            picture, problem = draw()
            if problem is not None:
                unreadable.append(problem)
            save_atomic(folder / file, lambda fh: picture.save(fh, "PNG"))
        photos = {real_path(photo).parent for _, photo, _ in pictures}
        if folder == out_dir and drop_earlier and real_path(folder) not in photos:
            # Drawn beside what the folder holds: an earlier run's pictures this one did not draw again (it drew fewer
            # photos, or others) stood beside its own, two runs' pictures in one folder; what else is there is kept,
            # and nothing goes from a folder of the photos drawn (named like pictures, they are the input).
            for entry in sorted(os.listdir(folder)):
                if earlier(entry) and written_by_viz(entry) and entry not in drawn and (folder / entry).is_file():
                    remove_path(folder / entry)
                    dropped.append(entry)
    _record_pictures(out_dir, drawn + dropped)
    return len(pictures)


def _record_pictures(folder: Path, names: list[str]) -> None:
    """Record the pictures drawn into `folder` in its own ledger, each by its content, and drop the entries of those
    removed (bbuvl/outputs.py): what `viz_pictures` reads as viz's in a later run, and nothing else there."""
    Claim(VIZ, [output_path(folder / name) for name in names], {}).finish(succeeded=True)


Drawing = Callable[[], tuple[Image.Image, str | None]]  # a picture and why its photo could not be read, or None
Picture = tuple[str, Path, Drawing]  # the picture's file name, the photo it draws, and its drawing


def _prediction_pictures(pred: Path, font: FontChoice, name: LabelNamer, limit: int, faults: Faults,
                         thresholds: FramedThresholds | None) -> list[Picture]:
    """The file name and drawing of each of the first `limit` lines of predictions `pred`, their photos checked; each
    line's faults judged by `faults` and its framing's `thresholds`."""
    root = predictions_root(pred)
    shown = require_photos(read_predictions(pred), pred)[:limit]
    check_photos_unchanged(shown, pred)
    pictures = []
    for i, line in enumerate(shown):
        path = root / line.image
        size = (line.width, line.height) if line.width and line.height else None
        pictures.append((f"{i:04d}_{file_stem(path.stem)}.png", path,
                         partial(prediction_picture, path, line.objects, font, name, size=size,
                                 title=prediction_title(line), faults=faults,
                                 verdict=None if thresholds is None else thresholds.of(line.tiled))))
    return pictures


def _compared_pictures(gt: Path, pred: str | Path | None, font: FontChoice, name: LabelNamer, limit: int,
                       iou: float, faults: Faults, thresholds: FramedThresholds | None) -> list[Picture]:
    """The file name and drawing of each of the first `limit` records of `gt`, beside their predictions in `pred`;
    faults judged by `faults` and, on the prediction side, the thresholds of each line's framing."""
    # With predictions, a photo listed twice pairs with one of its lines: refused, as eval refuses it
    records = require_photos(read_ground_truth(gt) if pred else read_records(gt), gt)
    # Paired with every record, then cut: the lines of the first `limit` photos alone may be none of them. An empty
    # file is refused, as eval refuses it: every photo drawn with "prediction (0)" looks like a result.
    lines = (align_predictions(records, gt, require_photos(read_predictions(pred), pred), pred).predictions if pred
             else [None] * len(records))
    pictures = []
    for i, (record, line) in enumerate(zip(records[:limit], lines)):
        path = resolve_image(gt, record.image)
        objects = None if pred is None else (line.objects if line else [])
        match = None
        if objects is not None:
            match = match_image([o.bbox_2d for o in record.objects], [label_key(o.desc) for o in record.objects],
                                [o["bbox_2d"] for o in objects], [label_key(o["label"]) for o in objects],
                                [o["score"] for o in objects], iou_threshold=iou)
        pictures.append((f"{i:04d}_{file_stem(path.stem)}.png", path,
                         partial(compare_picture, record, path, objects, match, font, name,
                                 prediction_title=prediction_title(line), faults=faults,
                                 verdict=None if thresholds is None else thresholds.of(bool(line and line.tiled)))))
    return pictures


@contextmanager
def _picture_folder(out_dir: Path, replace: bool) -> Iterator[Path]:
    """Where the pictures go: `out_dir` itself, what else it holds kept; or, with `replace` or no `out_dir` yet, a
    new folder that takes its name whole once every picture is in it, so that a re-run never leaves
    an earlier run's pictures beside its own (docs/outputs.md, "A re-run replaces") and a failed one no half."""
    if replace or not os.path.lexists(out_dir):
        with atomic_folder(out_dir) as folder:
            yield folder
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    yield out_dir


def check_photos_unchanged(lines: list[PredictionLine], pred: Path) -> None:
    """DatasetError naming `pred`'s line when a photo to draw has other content than the photo it was predicted on.

    The boxes would be drawn on another photo (replaced under its name, or another dataset's at the predict input's
    path). As eval does (`check_same_photos`), each photo is compared with the digest the manifest beside `pred`
    recorded, trusted by its stat while unchanged (docs/resume.md, "Cost: hash once, then trust the stat"). A
    manifest without digests, or none, records nothing to compare with: the photos there now are drawn.
    """
    photos = PredictedPhotos.read(pred)
    if photos is None or photos.manifest.key is None:
        return
    manifest, root = photos.manifest, photos.root
    for line in lines:
        if photos.differs(line.image, root / line.image):  # an unreadable photo is drawn on a placeholder naming why
            raise DatasetError(pred, line.line, (
                f"photo {line.image} ({root / line.image}) has other content than the photo it was predicted on "
                f"(its SHA-256 in {manifest_path(pred).name}): it was replaced or changed since, and these boxes are "
                f"not of it; predict again, {predict_again(manifest, pred)}, to draw it"))
