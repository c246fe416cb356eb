"""Few-shot classification in batches (`fewshot classify`): embed the support set, then stream queries through the
classifier (the rule itself is `classifier.py`) into a CSV or JSONL file.

Each output row says what the query was (file, crop box, ground truth when known), the answer (a class
or Unknown), the best and runner-up class with their scores, the margin and its confidence band. Rows
are written batch by batch, so the file grows as the run goes and memory does not. In the CSV, text that starts
like a spreadsheet formula (`=`, `+`, `-`, `@`, tab, CR) gets a leading apostrophe; the JSONL keeps it as it is.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from bbuvl.atomic import atomic_path, remove_dead_writers_temporaries, written_path
from bbuvl.data.jsonfile import dumps_json
from bbuvl.data.text import label_key, not_text
from bbuvl.fewshot.backbones import Backbone
from bbuvl.fewshot.cache import EmbeddingCache
from bbuvl.fewshot.classifier import FewShotClassifier, Mode, decide
from bbuvl.fewshot.embed import EmbedReport, ImageItem, embed_items
from bbuvl.fewshot.support import SupportSet, sample_support, support_items, unreadable_photos

Shots = int | None  # None = every support image
OUTPUT_SUFFIXES = (".csv", ".jsonl")
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection, OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FIELDS = ["query", "image", "box", "truth", "label", "best_class", "score", "second_class", "second_score",
          "margin", "confidence"]


def shots_name(shots: Shots) -> str:
    """How a shot count is written in files and tables: `5`, or `all`."""
    return "all" if shots is None else str(shots)


@dataclass
class FittedSupport:
    """The support images drawn for one shot count and the classifier built on their embeddings."""

    shots: Shots
    chosen: dict[str, list[Path]]  # class -> images actually embedded
    classifier: FewShotClassifier


_NONE = object()  # no earlier shot count drew the same images


def fit_support(
    support: SupportSet,
    shot_list: list[Shots],
    seed: int,
    backbone: Backbone,
    cache: EmbeddingCache | None,
    batch_size: int,
    report: EmbedReport,
    mode: Mode = "mean",
) -> tuple[list[FittedSupport], list[str]]:
    """A classifier per shot count, every distinct support image embedded once; also warnings (short classes, a photo
    in two classes)."""
    samples, warnings = {}, support.shared_photos()
    same: dict[Shots, list[Shots]] = {}  # shot count -> later ones that draw its very images
    # Read before the draw: which photo a seed draws decided whether an unreadable one failed the run or went unsaid.
    unreadable = unreadable_photos(support.drawn_from(shot_list))
    report.skipped.extend(unreadable.values())
    for shots in shot_list:
        chosen, short = sample_support(support, shots, seed, unreadable)
        # K past every class's size draws what `all` draws: `--shots 1,...,20000` evaluated (and warned of) the same
        # support 20,000 times, for hours. Each draw is evaluated once, under its first shot count.
        twin = next((k for k, c in samples.items() if c == chosen), _NONE)
        if twin is not _NONE:
            same.setdefault(twin, []).append(shots)
            continue
        samples[shots] = chosen
        warnings += [f"shots={shots_name(shots)}: {w}" for w in short]
    for twin, others in same.items():
        listed = ", ".join(shots_name(s) for s in others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        warnings.append(f"shots={listed} draw the support images of shots={shots_name(twin)} (no class has more): "
                        f"evaluated once, as shots={shots_name(twin)}")
    union = {item.path: item for chosen in samples.values() for item in support_items(chosen)}
    vectors: dict[Path, np.ndarray] = {}
    for items, vecs in embed_items(union.values(), backbone, cache, batch_size, report):
        vectors.update((item.path, v) for item, v in zip(items, vecs))
    fitted = []
    for shots, chosen in samples.items():
        kept = {label: [p for p in paths if p in vectors] for label, paths in chosen.items()}
        empty = [label for label, paths in kept.items() if not paths]
        if empty:
            raise ValueError(f"class '{empty[0]}' has no readable support image for shots={shots_name(shots)}: "
                             + "; ".join(report.skipped[:3]))
        labels = [label for label, paths in kept.items() for _ in paths]
        stacked = np.stack([vectors[p] for paths in kept.values() for p in paths])
        fitted.append(FittedSupport(shots, kept, FewShotClassifier.fit(labels, stacked, mode)))
    return fitted, warnings


def classified_rows(
    classifier: FewShotClassifier, batches: Iterable[tuple[list[ImageItem], np.ndarray]], threshold: float
) -> Iterator[dict]:
    """One result dict per query, batch by batch: answer, top two classes, scores, margin, confidence, all scores."""
    classes = classifier.classes
    # A truth typed otherwise than its class (a folder name decomposed by macOS, full-width, a trailing space) is
    # written as the class, as eval counts it: the two columns compare equal where they mean one label.
    spelled = {label_key(c): c for c in classes}
    for items, vectors in batches:
        scores = classifier.scores(vectors)
        d = decide(scores, threshold)
        answers, confidence = d.labels(classes), d.confidence()
        for i, item in enumerate(items):
            yield {
                "query": item.where, "image": str(item.path),
                "box": [round(float(v), 2) for v in item.box] if item.box is not None else None,
                "truth": item.label and spelled.get(label_key(item.label), item.label), "label": answers[i],
                "best_class": classes[d.best[i]],
                "score": round(float(d.best_score[i]), 6),
                "second_class": classes[d.second[i]] if d.second[i] >= 0 else None,
                "second_score": round(float(d.second_score[i]), 6), "margin": round(float(d.margin[i]), 6),
                "confidence": confidence[i],
                "scores": {c: round(float(s), 6) for c, s in zip(classes, scores[i])},
            }


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: user text starting like a formula gets a leading apostrophe (a
    number written as text, a negative score, is left as it is: a spreadsheet reads it as that number)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text  # a tab or CR around it is not a number's


def _csv_cell(key: str, value: object) -> object:
    """One row value as its CSV cell: empty for none, the box as JSON, text made spreadsheet-safe."""
    if value is None:
        return ""
    return json.dumps(value) if key == "box" else spreadsheet_safe(value)


def write_rows(rows: Iterable[dict], out: str | Path, on_row: Callable[[dict], None] | None = None) -> int:
    """Write result rows, as they come, to `.csv` (the fixed columns) or `.jsonl` (everything); returns the count."""
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ValueError(f"{out}: the output must end in .csv or .jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    # A run killed half-way left its rows as `.NAME.PID.*.tmp.csv`, one more per kill, never removed (atomic.py looks
    # for a file's strays only where asked): a run is long, its stray as big as its rows.
    remove_dead_writers_temporaries(written_path(out))
    n = 0
    with atomic_path(out) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:  # whole, or the old file kept
        writer = csv.writer(fh) if out.suffix.lower() == ".csv" else None
        if writer is not None:
            writer.writerow(FIELDS)
        for row in rows:
            if writer is not None:
                cells = [_csv_cell(k, row[k]) for k in FIELDS]  # the JSONL keeps the text as it is
                if (problem := next(filter(None, (not_text(c) for c in cells if isinstance(c, str))), None)) is not None:
                    raise ValueError(f"{out}: not written: {problem}; a .csv holds UTF-8 text only, where a .jsonl "
                                     "keeps such a name as JSON escapes")
                writer.writerow(cells)
            else:
                fh.write(dumps_json(row) + "\n")
            n += 1
            if on_row is not None:
                on_row(row)
    return n
