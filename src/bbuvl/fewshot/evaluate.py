"""`fewshot eval`: score every query once per shot count, then sweep the threshold and write tables and plots.

Queries are embedded once (streamed, cached); per shot count only the best class, best score and
runner-up score of each query are kept, which is all the threshold sweep needs. A query whose class has
no support folder has the truth `Unknown`: accepting it as any class counts towards fall-out. With `--level`, the
answers are cut to that level as the dataset's labels are (a support class `a/b/c` answers `a` at level 1), so the
evaluation is at that level on both sides: queries.csv's best and second class too, a cut class scoring as its best
support class, so the runner-up is the next class at that level; summary.json's support_images counts each class at
the level by its support classes' images together.

Output folder:
    metrics.csv                 one row per (shots, threshold): accuracy, balanced accuracy, macro P/R/F1, MCC, fall-out
    per_class.csv               per (shots, threshold, class incl. Unknown): counts, TP/FP/FN, P/R/F1
    confusion/shots<K>_t<T>.csv confusion matrix, rows truth, columns prediction, Unknown as a row and a column
    queries.csv                 per (query, shots): best and second class (at --level), scores, margin, confidence
    summary.json                inputs, counts (support images per class, at --level), skipped files, cache hits,
                                every row, best threshold per shot count
    accuracy_vs_threshold.png, fallout_vs_threshold.png, confusion_best.png
"""

from __future__ import annotations

import csv
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from bbuvl.atomic import atomic_path, name_or_temporary, write_text_atomic
from bbuvl.data.jsonfile import dumps_json
from bbuvl.data.labels import SEP, label_at_level
from bbuvl.data.text import label_key
from bbuvl.fewshot.backbones import Backbone
from bbuvl.fewshot.batch import FittedSupport, Shots, fit_support, shots_name, spreadsheet_safe
from bbuvl.fewshot.cache import DigestMemo, EmbeddingCache
from bbuvl.fewshot.classifier import SCORE_DECIMALS, Mode, confidence_band, decide
from bbuvl.fewshot.copies import SupportCopies
from bbuvl.fewshot.embed import EmbedReport, ImageItem, embed_items
from bbuvl.fewshot.metrics import METRIC_NAMES, classification_metrics, confusion, per_class
from bbuvl.fewshot.plots import plot_confusion, plot_metric_vs_threshold
from bbuvl.fewshot.queries import iter_queries, none_answered, self_labelled
from bbuvl.fewshot.support import UNKNOWN, read_support

Progress = Callable[[str, int], None]  # (stage, items done so far)


MAX_SHOTS = 100


def parse_shots(text: str) -> list[Shots]:
    """`"1,5,10"` -> [1, 5, 10]; `all` stands for every support image."""
    out: list[Shots] = []
    for part in (p.strip() for p in text.split(",")):
        if part.lower() == "all":
            out.append(None)
        elif part.isascii() and part.isdigit() and int(part) > 0:  # '²' is a digit to isdigit, not to int
            out.append(int(part))
        else:
            raise ValueError(f"shots must be positive whole numbers or 'all', separated by commas; got '{part}' in '{text}'")
    if not out:
        raise ValueError("give at least one shot count, e.g. --shots 1,5,10")
    out = list(dict.fromkeys(out))
    if len(out) > MAX_SHOTS:  # each is a whole evaluation over every threshold, with its own tables
        raise ValueError(f"--shots lists {len(out):,} shot counts, more than {MAX_SHOTS}; give a few (e.g. 1,5,10,all)")
    return out


# Each threshold writes a confusion table per shot count: 0.4:0.9:1e-9 asked for a billion and hung building the list.
MAX_THRESHOLDS = 1001


def parse_thresholds(text: str) -> list[float]:
    """`"0.4:0.9:0.05"` (start:stop:step, stop included) or `"0.5,0.7"` -> sorted thresholds (at most MAX_THRESHOLDS)."""
    ranged = ":" in text
    try:
        values = [float(v) for v in text.split(":" if ranged else ",")]
    except ValueError:
        values = []
    if ranged and not (len(values) == 3 and math.isfinite(values[2]) and values[2] > 0 and values[0] <= values[1]):
        values = []  # a NaN or infinite step would give NaN thresholds, not an error
    if not values:
        raise ValueError(f"thresholds must be START:STOP:STEP (e.g. 0.4:0.9:0.05) or a comma list, got '{text}'")
    if not all(math.isfinite(v) and -1.0 <= v <= 1.0 for v in values[: 2 if ranged else None]):
        raise ValueError(f"thresholds are cosine similarities: each must be a finite number in [-1, 1], got '{text}'")
    n = math.floor((values[1] - values[0]) / values[2] + 1e-9) + 1 if ranged else len(values)
    if n > MAX_THRESHOLDS:
        raise ValueError(f"thresholds '{text}' are {n:,} values, more than {MAX_THRESHOLDS} (each writes a confusion "
                         "table per shot count): give a larger STEP")
    if ranged:
        values = [values[0] + i * values[2] for i in range(n)]
    # At the precision threshold_name writes (-0.0 as 0.0): two thresholds it names alike wrote one confusion table
    # and one table cell, the second over the first.
    return sorted({round(v, 6) + 0.0 for v in values})


def threshold_name(t: float) -> str:
    """A threshold as tables and file names show it: at least two decimals, no more than it has (0.40, 0.975)."""
    whole, _, frac = f"{t:.6f}".rstrip("0").partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


# The only names a run writes into --out (the module's docstring; `shots_name`, `threshold_name` in a confusion table's
# name), and their temporaries'.
_OWN_NAME = re.compile(
    name_or_temporary(r"(?:metrics|per_class|queries)\.csv|summary\.json|(?:accuracy|fallout)_vs_threshold\.png"
                      r"|confusion_best\.png")
    + r"|confusion/" + name_or_temporary(r"shots(?:\d+|all)_t-?\d+\.\d+\.csv"))


def written_by_fewshot_eval(name: str) -> bool:
    """Whether `name`, relative to --out, is one a run of `run_eval` writes there."""
    return _OWN_NAME.fullmatch(name) is not None


@dataclass
class ShotRun:
    """One shot count's classifier and, filled as queries stream, each query's best and runner-up class."""

    fit: FittedSupport
    level: int | None = None  # the answers are cut to this many levels, as the queries' labels are
    best: list[np.ndarray] = field(default_factory=list)  # per batch: [n] class index
    best_score: list[np.ndarray] = field(default_factory=list)  # per batch: [n]
    second: list[np.ndarray] = field(default_factory=list)
    second_score: list[np.ndarray] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The shot count as files show it."""
        return shots_name(self.fit.shots)

    names: list[str] = field(init=False)  # the classes answered, cut to the level
    _groups: list[list[int]] = field(init=False)

    def __post_init__(self) -> None:
        full = list(self.fit.classifier.classes)
        self.names = full if self.level is None else sorted({label_at_level(c, self.level) for c in full})
        # Which answered class each support class scores for: at the level, a class's score is its best member's, so
        # the runner-up is another answer, never a sibling of the best (`a/b` then `a/c`, both `a`, a margin of none).
        self._groups = [[j for j, c in enumerate(full) if label_at_level(c, self.level) == name] for name in self.names]

    def add(self, vectors: np.ndarray) -> None:
        """Score a batch of query embeddings `[n, D]` and keep their top two answered classes."""
        scores = self.fit.classifier.scores(vectors)
        if self.level is not None:
            scores = np.stack([scores[:, group].max(axis=1) for group in self._groups], axis=1)
        d = decide(scores, threshold=-math.inf)
        self.best.append(d.best)
        self.best_score.append(d.best_score)
        self.second.append(d.second)
        self.second_score.append(d.second_score)

    def support_counts(self) -> dict[str, int]:
        """How many support images each class answered (`names`) stands on: at the level, its members' together, so
        that summary.json names the classes its tables and `classes` name."""
        counts = dict.fromkeys(self.names, 0)
        for c, paths in self.fit.chosen.items():
            counts[label_at_level(c, self.level)] += len(paths)
        return counts

    def column(self, name: str) -> np.ndarray:
        """All queries' values of one kept column, `[N]`."""
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)

    def answers(self, threshold: float) -> list[str]:
        """Every query's answer at `threshold`: its best class, or Unknown below it."""
        top = np.array(self.names, dtype=object)[self.column("best").astype(int)]
        return np.where(self.column("best_score") >= threshold, top, UNKNOWN).tolist()


def _with_truth(items: Iterator[ImageItem], classes: set[str], problems: list[str],
                below: list[tuple[ImageItem, str]] | None = None) -> Iterator[ImageItem]:
    """Queries with a ground truth (a class however typed, or Unknown for a class without support); the rest reported.
    A query Unknown whose label lies under a support class (`a/b/c` where the support has `a`) goes to `below` too,
    with that class."""
    spelled = {label_key(c): c for c in classes}
    for item in items:
        if item.label is None:
            problems.append(f"{item.where}: query has no ground truth (put it in a class folder); left out of the evaluation")
            continue
        key = label_key(item.label)
        truth = spelled.get(key, UNKNOWN)
        if truth == UNKNOWN and below is not None:
            parts = key.split(SEP)
            if above := next((spelled[k] for n in range(len(parts) - 1, 0, -1)
                              if (k := SEP.join(parts[:n])) in spelled), None):
                below.append((item, above))
        yield item if truth == item.label else replace(item, label=truth)


def _below_support_note(below: list[tuple[ImageItem, str]], total: int, query: Path) -> str:
    """The warning for queries counted Unknown whose labels lie under a support class: a support set cut to a level
    (support/螺丝连接点/) against queries of full labels scored each of them as a class without support."""
    item, above = below[0]
    depth = above.count(SEP) + 1
    fix = (f"give --level {depth} to score them at the support's level" if query.is_file() else
           "label the queries as the support's classes are (a folder per support class)")
    return (f"{len(below)} of {total} queries are labelled below a support class and counted as Unknown (no support of "
            f"their own; the first: {item.where}, '{item.label}' under '{above}'): {fix}")


def _support_copies(runs: list[ShotRun]) -> SupportCopies:
    """The support images every shot count embedded, each once, to find the queries that are one of them."""
    rows: dict[Path, np.ndarray] = {}
    for run in runs:
        paths = [path for paths in run.fit.chosen.values() for path in paths]  # the classifier's rows, in order
        rows.update(zip(paths, run.fit.classifier.support))
    return SupportCopies(list(rows), np.stack(list(rows.values())) if rows else np.zeros((0, 1), np.float32))


def _write_csv(path: Path, rows: list[dict]) -> None:
    """`rows` as a CSV, the header from the first; class names (in cells and, for a confusion matrix, in the header)
    made spreadsheet-safe (`spreadsheet_safe`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        if not rows:
            return
        writer = csv.writer(fh)
        fields = list(rows[0])
        writer.writerow([spreadsheet_safe(k) for k in fields])
        writer.writerows([["" if row[k] is None else spreadsheet_safe(row[k]) for k in fields] for row in rows])


def _write_query_rows(path: Path, runs: list[ShotRun], origins: list[str], truth: list[str]) -> None:
    """queries.csv, written row by row: per query and shot count, the top two classes, margin, confidence."""
    fields = ["query", "truth", "shots", "best_class", "score", "second_class", "second_score", "margin", "confidence"]
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        for run in runs:
            names = run.names  # at --level, cut as the truths are
            best, best_score = run.column("best").astype(int), run.column("best_score")
            second, second_score = run.column("second").astype(int), run.column("second_score")
            for i, origin in enumerate(origins):
                m = round(float(best_score[i] - second_score[i]), SCORE_DECIMALS)  # as classify's margin
                writer.writerow([spreadsheet_safe(origin), spreadsheet_safe(truth[i]), run.name,
                                 spreadsheet_safe(names[best[i]]), f"{best_score[i]:.6f}",
                                 spreadsheet_safe(names[second[i]]) if second[i] >= 0 else "", f"{second_score[i]:.6f}",
                                 f"{m:.6f}", confidence_band(m)])


def _round(v: float | None, digits: int = 6) -> float | None:
    return None if v is None else round(float(v), digits)


def _sweep(
    runs: list[ShotRun], truth: list[str], thresholds: list[float], labels: list[str]
) -> tuple[list[dict], list[dict], dict[tuple[str, float], np.ndarray]]:
    """Metric rows, per-class rows and confusion matrices for every (shots, threshold)."""
    metric_rows, class_rows, confusions = [], [], {}
    for run in runs:
        for t in thresholds:
            pred = run.answers(t)
            m = classification_metrics(truth, pred)
            metric_rows.append({"shots": run.name, "threshold": t, "queries": len(truth),
                                "unknown_truth": truth.count(UNKNOWN), "predicted_unknown": pred.count(UNKNOWN),
                                **{k: _round(v) for k, v in m.items()}})
            for row in per_class(truth, pred, labels):
                class_rows.append({"shots": run.name, "threshold": t,
                                   **{k: _round(v) if isinstance(v, float) else v for k, v in row.items()}})
            confusions[(run.name, t)] = confusion(truth, pred, labels)
    return metric_rows, class_rows, confusions


def best_rows(metric_rows: list[dict]) -> dict[str, dict]:
    """Per shot count, the threshold with the highest macro F1 (the lower threshold on a tie) and its metrics: chosen
    on the queries it is scored on, in-sample, an upper bound for new photos."""
    best: dict[str, dict] = {}
    for r in metric_rows:
        b = best.get(r["shots"])
        if b is None or (r["macro_f1"] or 0.0) > (b["macro_f1"] or 0.0):
            best[r["shots"]] = r
    return {name: {"threshold": r["threshold"], **{k: r[k] for k in METRIC_NAMES}} for name, r in best.items()}


def run_eval(
    support_root: str | Path,
    query_path: str | Path,
    backbone: Backbone,
    out_dir: str | Path,
    shots: Sequence[Shots] = (1, 5, 10),
    thresholds: Sequence[float] = (0.5, 0.7),
    mode: Mode = "mean",
    seed: int = 0,
    margin: float = 0.0,
    level: int | None = None,
    cache: EmbeddingCache | None = None,
    batch_size: int = 32,
    on_progress: Progress | None = None,
) -> dict:
    """Evaluate few-shot recognition over shots x thresholds, write every table and plot, return the summary."""
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    support = read_support(support_root)
    # At --level the truths are cut, and so are the answers: a support class deeper than the level (`a/b/c` against
    # truths `a`) was never any query's truth, every query of its category was Unknown and each answer a false accept.
    classes = sorted({label_at_level(c, level) for c in support.classes})
    support_report, query_report = EmbedReport(), EmbedReport()
    fitted, warnings = fit_support(support, list(shots), seed, backbone, cache, batch_size, support_report, mode)
    runs = [ShotRun(f, level) for f in fitted]

    problems: list[str] = list(filter(None, [support.left_out]))
    below: list[tuple[ImageItem, str]] = []
    queries = _with_truth(iter_queries(query_path, problems, margin=margin, level=level), set(classes), problems, below)
    origins: list[str] = []
    truth: list[str] = []
    # A query that is a support photo scores 1 against its class by construction (query = support folder, a copy).
    support_photos, digest, seen = {im.digest for im in support.images}, DigestMemo(), []
    # A crop of the photo a support crop was cut from (--query train.jsonl, the support cut from it) has its pixels
    copies, copied = _support_copies(runs), []
    for items, vectors in embed_items(queries, backbone, cache, batch_size, query_report):
        origins += [item.where for item in items]
        truth += [item.label for item in items]  # type: ignore[misc]
        same_bytes = [item.where for item in items if item.box is None and digest(item.path) in support_photos]
        seen += same_bytes
        copied += [(where, path) for where, path in copies.find(items, vectors) if where not in same_bytes]
        for run in runs:
            run.add(vectors)
        if on_progress:
            on_progress("queries", len(truth))
    if not truth:
        raise none_answered(query_path, "evaluated", problems + query_report.skipped)

    labelled, first = self_labelled(query_path)
    if labelled:
        warnings.append(f"{labelled} of {len(truth)} queries are labelled as `fewshot label` answered them (the first: "
                        f"{first}): scored against those answers, a classifier as the one that labelled them is right "
                        "by construction; score it on labels people gave")
    if below:
        warnings.append(_below_support_note(below, len(truth), Path(query_path)))
    if seen:
        warnings.append(f"{len(seen)} of {len(truth)} queries are support photos themselves (the same bytes; the first: "
                        f"{seen[0]}): each scores 1 against its own class, so these numbers are higher than on new photos")
    if copied:
        warnings.append(f"{len(copied)} of {len(truth)} queries are support images themselves (the same pixels; the "
                        f"first: {copied[0][0]}, as {copied[0][1]}): each scores as its support image does, so these numbers are higher than "
                        "on new photos; cut the support from photos the queries do not hold")
    labels = classes + [UNKNOWN]
    metric_rows, class_rows, confusions = _sweep(runs, truth, list(thresholds), labels)
    _write_query_rows(out / "queries.csv", runs, origins, truth)
    _write_csv(out / "metrics.csv", metric_rows)
    _write_csv(out / "per_class.csv", class_rows)
    for (name, t), cm in confusions.items():
        _write_csv(out / "confusion" / f"shots{name}_t{threshold_name(t)}.csv",
                   [{"true \\ predicted": label, **{col: int(v) for col, v in zip(labels, cm[i])}} for i, label in enumerate(labels)])

    best = best_rows(metric_rows)
    n_unknown = truth.count(UNKNOWN)
    files = {
        "accuracy_plot": plot_metric_vs_threshold(
            metric_rows, "accuracy", "Few-shot accuracy vs threshold", "accuracy (Unknown counted as a class)",
            out / "accuracy_vs_threshold.png"),
        "fallout_plot": plot_metric_vs_threshold(
            metric_rows, "fallout", "Fall-out vs threshold (Unknown-truth queries accepted as a class)", "fall-out",
            out / "fallout_vs_threshold.png", note="" if n_unknown else "no Unknown-truth queries: fall-out undefined"),
    }
    last = runs[-1].name
    t_best = best[last]["threshold"]
    files["confusion_plot"] = plot_confusion(
        confusions[(last, t_best)], labels, f"Confusion, {last} shots, threshold {threshold_name(t_best)} (best macro F1)",
        out / "confusion_best.png")

    summary = {
        "support": str(support_root), "query": str(query_path),
        "backbone": {"kind": backbone.kind, "key": backbone.key, "dim": backbone.dim},
        "mode": mode, "seed": seed, "margin": margin, "level": level,
        "classes": classes,
        "support_images": {r.name: r.support_counts() for r in runs},
        "queries": {"evaluated": len(truth), "unknown_truth": n_unknown,
                    "per_truth": {label: truth.count(label) for label in labels if truth.count(label)}},
        "embedding": {
            "support": {"embedded": support_report.embedded, "cached": support_report.cached},
            "queries": {"embedded": query_report.embedded, "cached": query_report.cached},
            "cache": str(cache.path) if cache is not None else None,
        },
        "skipped": support_report.skipped + query_report.skipped,
        "problems": problems,
        "warnings": warnings,
        "thresholds": list(thresholds),
        "accuracy_table": {r.name: {threshold_name(row["threshold"]): row["accuracy"] for row in metric_rows
                                    if row["shots"] == r.name} for r in runs},
        "best": best,
        "rows": metric_rows,
        "files": {k: str(v) for k, v in files.items()},
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_text_atomic(out / "summary.json", dumps_json(summary, indent=2) + "\n")
    return summary
