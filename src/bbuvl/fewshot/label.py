"""`fewshot label`: give the detector's boxes few-shot labels and write them as a dataset `bbuvl data check` accepts.

Every detected box (score >= `min_score`) is cropped and classified against the support set. An accepted
box gets the few-shot class as its `desc`; an Unknown one is left out (`unknown="drop"`, the default) or
kept under its detector label and flagged in `extra` (`unknown="flag"`). The scores behind each decision
travel in `extra`, which the model never sees, each as the value decided on: the few-shot score and margin at
`SCORE_DECIMALS` (what the classifier compares with the threshold and the bands), the detector's score as it gave it
(what `--min-score` compared), so a written score reads on the side of the threshold its box was put. Only labels
the hierarchy knows can be written, so support classes are checked against it before anything is embedded.

What the dataset needs and a detector does not promise is fixed on the way: boxes are clipped to the image,
empty ones dropped, a second box of the same label on (nearly) the same place dropped (the higher score
wins), objects sorted by (y1, x1), width/height taken from the image file, a photo an earlier line holds under another
name (a copy, a link) labelled once. A photo that is missing or cannot be decoded, or whose every box was Unknown
and dropped (written with none, it would say nothing is there), is reported and left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from bbuvl.atomic import remove_dead_writers_temporaries, written_path
from bbuvl.data.check import ImageInfo, duplicate_pairs, probe_image
from bbuvl.data.coords import box_is_degenerate, clip_box
from bbuvl.data.images import photo_digests
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import ImageRecord, ObjectAnn, sort_objects, write_dataset
from bbuvl.data.text import name_as_text
from bbuvl.fewshot.backbones import Backbone
from bbuvl.fewshot.cache import EmbeddingCache
from bbuvl.fewshot.classifier import SCORE_DECIMALS, FewShotClassifier, confidence_band, decide
from bbuvl.fewshot.embed import EmbedReport, ImageItem, embed_items
from bbuvl.fewshot.queries import FEWSHOT_BEST, PredictionLine, detector_score, iter_predictions, none_answered
from bbuvl.fewshot.support import UNKNOWN
from bbuvl.paths import real_path

UnknownPolicy = Literal["drop", "flag"]
UNKNOWN_POLICIES = ("drop", "flag")


@dataclass
class LabelReport:
    """Counts and messages of an auto-label run."""

    images_written: int = 0
    images_skipped: int = 0
    labelled: int = 0  # boxes given a few-shot class
    unknown_dropped: int = 0
    unknown_flagged: int = 0
    below_min_score: int = 0
    fixed: list[str] = field(default_factory=list)  # boxes clipped, dropped as empty or duplicate
    problems: list[str] = field(default_factory=list)  # lines and images left out, and why
    embedding: EmbedReport = field(default_factory=EmbedReport)


def check_classes(classes: list[str], hierarchy: Hierarchy) -> None:
    """Raise when a support class is not a complete label of the hierarchy (data check would reject it)."""
    bad = [(c, hierarchy.problem(c)) for c in classes if hierarchy.problem(c) is not None]
    if bad:
        lines = "; ".join(f"'{c}': {why}" for c, why in bad)
        raise ValueError(
            f"support classes that are not labels of the hierarchy ({hierarchy.source}): {lines}. Name the class "
            "folders after complete labels (nested folders give category/attribute/state), or add the new part "
            "type to a copy of the hierarchy and pass it with --hierarchy"
        )


def _groups(
    path: Path, lines: Iterator[PredictionLine], min_score: float, margin: float, size: int, report: LabelReport
) -> Iterator[list[tuple[PredictionLine, list[ImageItem | None]]]]:
    """Prediction lines in groups of about `size` boxes, each line with its crop items (None = box skipped)."""
    group: list[tuple[PredictionLine, list[ImageItem | None]]] = []
    n = 0
    for line in lines:
        items: list[ImageItem | None] = []
        for i, o in enumerate(line.objects):
            if detector_score(o) < min_score:
                report.below_min_score += 1
                items.append(None)
                continue
            # At the size it was predicted at: a photo resized since had the old frame's boxes written onto it
            items.append(ImageItem(line.image, tuple(o["bbox_2d"]), margin, None, f"{path}:{line.line} objects[{i}]",
                                   line.size))
        group.append((line, items))
        n += len(items)
        if n >= size:
            yield group
            group, n = [], 0
    if group:
        yield group


def _relative(image: Path, out: Path) -> str:
    """The image path as the dataset file should name it: relative to its folder when possible (a symbolic link
    keeps its own name: two links are two photos)."""
    try:
        return Path(os.path.relpath(os.path.abspath(image), real_path(out).parent)).as_posix()
    except ValueError:  # another drive (Windows)
        return os.path.abspath(image)


def _dedupe(objects: list[tuple[ObjectAnn, float]], where: str, report: LabelReport) -> list[ObjectAnn]:
    """Drop a box that repeats a higher-scoring box of the same label (same box, or IoU above data check's limit)."""
    ranked = [obj for obj, _ in sorted(objects, key=lambda os_: -os_[1])]
    near = _near_twins(ranked)
    kept = np.zeros(len(ranked), dtype=bool)
    first_kept: dict[tuple[float, ...], int] = {}  # a box, any label: the best kept one on it
    for j, obj in enumerate(ranked):
        box = tuple(obj.bbox_2d)
        twins = [i for i in near.get(j, []) if kept[i]] + ([first_kept[box]] if box in first_kept else [])
        if not twins:
            kept[j] = True
            first_kept.setdefault(box, j)
            continue
        twin = ranked[min(twins)]
        report.fixed.append(f"{where}: dropped a duplicate '{obj.desc}' box {obj.bbox_2d} (kept {twin.bbox_2d})")
        # counted as labelled when decided: "597 boxes labelled" over 409 written
        if (obj.extra or {}).get("fewshot") == "Unknown":
            report.unknown_flagged -= 1
        else:
            report.labelled -= 1
    return sort_objects(obj for obj, keep in zip(ranked, kept) if keep)


def _near_twins(ranked: list[ObjectAnn]) -> dict[int, list[int]]:
    """For each box, the better-ranked boxes of its very label on another box at IoU above data check's limit, best
    first: `data check`'s near-linear `duplicate_pairs`, where comparing each box with every kept one took 10 s for
    2,000 boxes."""
    near: dict[int, list[int]] = {}
    for i, j, _ in duplicate_pairs(ranked):
        if ranked[i].desc == ranked[j].desc and ranked[i].bbox_2d != ranked[j].bbox_2d:
            near.setdefault(j, []).append(i)
    return near


def _record(
    line: PredictionLine, items: list[ImageItem | None], vectors: dict[ImageItem, np.ndarray],
    classifier: FewShotClassifier, threshold: float, unknown: UnknownPolicy, hierarchy: Hierarchy,
    out: Path, where: str, report: LabelReport,
) -> ImageRecord | None:
    """The dataset record of one prediction line, or None when its image cannot be used."""
    if any(it is not None for it in items) and not any(it in vectors for it in items):
        return None  # its image failed to decode: already reported by the embedding stream
    # A box with no crop (empty inside the photo: reported by the embedding stream) is left out, not its photo: the
    # photo's other boxes were dropped with it, unsaid.
    items = [it if it in vectors else None for it in items]
    wanted = [it for it in items if it is not None]
    info = probe_image(line.image, decode=not wanted)  # with no crop, nothing has decoded it yet
    if not isinstance(info, ImageInfo):
        report.problems.append(f"{where}: {line.image}: {info}")
        return None
    size = info.upright
    if line.width is not None and (line.width, line.height) != size:
        report.fixed.append(f"{where}: width/height {line.width}x{line.height} replaced by the image's {size[0]}x{size[1]}")
    objects: list[tuple[ObjectAnn, float]] = []
    dropped = 0  # Unknown boxes left out of this photo
    if wanted:
        d = decide(classifier.scores(np.stack([vectors[it] for it in wanted])), threshold)
        answers = d.labels(classifier.classes)
    k = 0
    for i, (o, item) in enumerate(zip(line.objects, items)):
        if item is None:
            continue
        # name_as_text: half a character in a predicted label (a `\ud800` escape) stopped the whole run
        det_label, det_score = name_as_text(str(o.get("label") or "")), detector_score(o)
        best, score, margin = classifier.classes[d.best[k]], float(d.best_score[k]), float(d.margin[k])
        answer = answers[k]
        k += 1
        box = clip_box(o["bbox_2d"], size)
        if box_is_degenerate(box):
            report.fixed.append(f"{where}: objects[{i}]: box {o['bbox_2d']} is empty inside the {size[0]}x{size[1]} image; dropped")
            continue
        if box != [float(v) for v in o["bbox_2d"]]:
            report.fixed.append(f"{where}: objects[{i}]: box {o['bbox_2d']} clipped to the image: {box}")
        # Each written as the value decided on: at 4 decimals a box rejected at --threshold 0.6 showed 0.6000, one
        # kept showed less than the threshold, and a margin of 0.20004, 'high', showed 0.2000.
        extra = {FEWSHOT_BEST: best, "fewshot_score": f"{score:.{SCORE_DECIMALS}f}",
                 "fewshot_margin": f"{margin:.{SCORE_DECIMALS}f}", "fewshot_confidence": confidence_band(margin),
                 "detector_label": det_label, "detector_score": repr(det_score)}
        if answer != UNKNOWN:
            report.labelled += 1
            objects.append((ObjectAnn(bbox_2d=box, desc=answer, extra=extra), det_score))
        elif unknown == "flag" and hierarchy.is_valid(det_label):
            report.unknown_flagged += 1
            objects.append((ObjectAnn(bbox_2d=box, desc=det_label, extra={"fewshot": "Unknown", **extra}), det_score))
        else:
            report.unknown_dropped += 1
            dropped += 1
            if unknown == "flag":
                report.fixed.append(f"{where}: objects[{i}]: Unknown box dropped, its detector label '{det_label}' "
                                    "is not a label of the hierarchy")
    if line.objects and not objects:
        # Written with no box, the photo taught "nothing here" where the detector saw parts the support set does not
        # name, or that --min-score left out; `data convert` and `import-coco` leave out a photo whose every annotation
        # failed, too. A photo the detector found nothing in is written, as it was predicted.
        why = (f"every box it kept was Unknown ({dropped} dropped)" if dropped else
               f"none of its {len(line.objects)} boxes was kept (under --min-score, or empty inside the photo)")
        report.problems.append(f"{where}: {line.image}: {why}, so it is left out: written with none it would say "
                               "nothing is there")
        return None
    return ImageRecord(images=[_relative(line.image, out)], width=size[0], height=size[1],
                       objects=_dedupe(objects, where, report))


def refuse_repeated_photos(predictions: Path) -> None:
    """ValueError naming both lines when two lines of `predictions` are one photo (two predict outputs joined with
    `cat`): both were written, and the dataset, said to pass `data check`, failed it with the photo twice. Read
    before anything is embedded; which line is right is the user's to say."""
    first: dict[str, int] = {}
    for line in iter_predictions(predictions, []):
        seen = first.setdefault(os.path.normpath(os.path.abspath(line.image)), line.line)
        if seen != line.line:
            raise ValueError(f"{predictions}:{line.line}: {line.image} is the photo of line {seen} too; keep one line "
                             "per photo (the run you trust), then label again")


def _first_copies(path: Path, lines: Iterator[PredictionLine], report: LabelReport) -> Iterator[PredictionLine]:
    """`lines` without those whose photo is an earlier line's under another name (a copy, a link; by its image data,
    as `data check` compares): both were written, and the dataset, said to pass `data check`, failed it with 'the same
    photo twice'. The first is kept and each later one named; a photo that cannot be read passes, to be named there."""
    first: dict[str, PredictionLine] = {}
    for line in lines:
        try:
            digest = photo_digests(line.image, whole=False)[1]
        except OSError:
            yield line
            continue
        seen = first.setdefault(digest, line)
        if seen is line:
            yield line
            continue
        report.images_skipped += 1
        report.problems.append(f"{path}:{line.line}: {line.image} is the photo of line {seen.line} ({seen.image}) under "
                               "another name: labelled once, there")


def auto_label(
    predictions: str | Path,
    classifier: FewShotClassifier,
    backbone: Backbone,
    out: str | Path,
    threshold: float,
    unknown: UnknownPolicy = "drop",
    hierarchy: Hierarchy | None = None,
    margin: float = 0.0,
    min_score: float = 0.0,
    cache: EmbeddingCache | None = None,
    batch_size: int = 32,
) -> LabelReport:
    """Classify every detected box of a predictions file and write the labelled photos as a dataset JSONL."""
    if unknown not in UNKNOWN_POLICIES:
        raise ValueError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got '{unknown}'")
    hierarchy = hierarchy or Hierarchy.load()
    check_classes(classifier.classes, hierarchy)
    predictions, out = Path(predictions), Path(out)
    refuse_repeated_photos(predictions)
    report = LabelReport()

    def records() -> Iterator[ImageRecord]:
        """The dataset records, a group of ~batch_size boxes at a time (only one group's vectors alive)."""
        lines = _first_copies(predictions, iter_predictions(predictions, report.problems), report)
        for group in _groups(predictions, lines, min_score, margin, batch_size, report):
            wanted = [it for _, items in group for it in items if it is not None]
            vectors: dict[ImageItem, np.ndarray] = {}
            for items, vecs in embed_items(wanted, backbone, cache, batch_size, report.embedding):
                vectors.update(zip(items, vecs))
            for line, items in group:
                where = f"{predictions}:{line.line}"
                record = _record(line, items, vectors, classifier, threshold, unknown, hierarchy, out, where, report)
                if record is None:
                    report.images_skipped += 1
                    continue
                report.images_written += 1
                yield record
        # Raised before the file is closed, so nothing is written: a dataset of no photo passed for a result (exit 0,
        # "check it with data check") when every photo was missing or every line was not a prediction.
        if not report.images_written and (why := report.problems + report.embedding.skipped):
            raise none_answered(predictions, "labelled", why)

    remove_dead_writers_temporaries(written_path(out))  # a killed run's half dataset (as classify's write_rows)
    write_dataset(out, records())
    report.problems += report.embedding.skipped
    return report
