"""`bbuvl fewshot ...`: recognise new part types from a few examples, with Unknown rejection, and evaluate it."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from bbuvl.cli.common import (FILE_OUT, OVERWRITE_HELP, PATH_OR_ID, check_device, claim_outputs, command_group, console, err_console,
                              fail, finite_range, int_range, print_first, refuse_unused, stdout_is_tty, user_errors)
from bbuvl.outputs import check_replaced_whole

if TYPE_CHECKING:  # the heavy imports (torch, transformers) wait until a command runs
    from bbuvl.fewshot.backbones import Backbone
    from bbuvl.fewshot.cache import EmbeddingCache

app = command_group(help="Few-shot recognition of new part types (support set + backbone, no retraining).",
                  no_args_is_help=True)

SUPPORT = typer.Option(..., "--support", help="Support folder: <class>/*.jpg, shot<K>/<class>/*.jpg or <class>/shot<K>/*.jpg.")
BACKBONE = typer.Option(..., "--backbone", metavar=PATH_OR_ID, help="CLIP / DINOv2 / ResNet checkpoint folder or hub id, or 'pixels[:SIDE]'.")
MODE = typer.Option("mean", "--mode", help="Class score: 'mean' cosine to its support images, or cosine to the 'prototype'.")
SEED = typer.Option(0, "--seed", help="Seed for drawing K support images per class, among those that decode (every "
                    "candidate is read first; an unreadable one is named and never drawn).")
SHOTS = typer.Option(None, "--shots", callback=int_range(1), help="Use K support images per class (default: all).")
MARGIN = typer.Option(0.0, "--margin", help="Grow each box crop by this fraction of its size on every side.",
                      callback=finite_range(0))
BATCH = typer.Option(32, "--batch-size", callback=int_range(1), help="Images per backbone forward pass.")
DEVICE = typer.Option("auto", "--device", help="'auto' (GPU when present), 'cpu', 'cuda', 'cuda:1', ...")
CACHE = typer.Option(None, "--cache", help="Embedding cache folder (default: $BBUVL_CACHE/fewshot or ~/.cache/bbuvl/fewshot).")
NO_CACHE = typer.Option(False, "--no-cache", help="Embed everything again and store nothing.")
# Scores are cosine similarities, so a threshold outside [-1, 1] (or NaN, which silently drops everything) is a mistake.
THRESHOLD = typer.Option(0.6, "--threshold", help="Best score below this -> Unknown (equal is accepted); in [-1, 1].",
                         callback=finite_range(-1, 1))
OVERWRITE = typer.Option(False, "--overwrite", help=OVERWRITE_HELP)
MIN_SCORE = typer.Option(0.0, "--min-score", help="Skip detections scoring below this (predictions files).",
                         callback=finite_range(0, 1))


def _path(spec: str) -> Path | None:
    """A backbone given as a folder (an input to protect); None for a hub id or 'pixels'."""
    return Path(spec) if Path(spec).exists() else None


def _backbone(spec: str, device: str) -> Backbone:
    """Load the backbone quietly (transformers' own progress bars off: ours is enough)."""
    from transformers.utils import logging as hf_logging

    from bbuvl.fewshot.backbones import load_backbone

    if device != "auto":
        check_device(device)
    hf_logging.disable_progress_bar()
    with user_errors():
        return load_backbone(spec, device)


def _check_cache(folder: Optional[Path], off: bool, inputs: Mapping[str, Path | None], outputs: list[Path]) -> None:
    """Refuse a cache whose database would be written inside an input (an `embeddings.sqlite` in the support folder)
    or on an output (`--cache` typed as `--out`: a folder made where the results go), before anything is claimed."""
    from bbuvl.fewshot.cache import CACHE_FILE, default_cache_dir
    from bbuvl.outputs import OutputConflict, check_distinct, check_not_inputs

    if off:
        if folder is not None:  # the folder was ignored without a word
            fail(f"--cache {folder} and --no-cache contradict each other: keep one")
        return
    database = (folder or default_cache_dir()) / CACHE_FILE
    try:
        check_not_inputs({what: path for what, path in inputs.items() if what != "--cache"}, files=[database])
        check_distinct([*outputs, database])
    except OutputConflict as e:
        fail(f"--cache: {e}")


def _cache(folder: Optional[Path], off: bool) -> EmbeddingCache | None:
    """The embedding cache (None with --no-cache); a write its disk refuses is one warning line, when it happens, and
    the command goes on without it."""
    from bbuvl.fewshot.cache import EmbeddingCache, default_cache_dir

    if off:
        return None
    with user_errors():
        return EmbeddingCache(folder or default_cache_dir(), warn=lambda why: print_first([why], out=err_console))


def _mode(mode: str) -> str:
    from bbuvl.fewshot.classifier import MODES

    if mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}, got '{mode}'")
    return mode


def _progress(what: str) -> Progress:
    return Progress(SpinnerColumn(), TextColumn(f"[bold]{what}[/] {{task.completed}}"), TimeElapsedColumn(),
                    console=console, transient=True, disable=not stdout_is_tty())


def _refuse_unused_options(ctx: typer.Context, query: Path | None, seeded: bool) -> None:
    """Refuse options typed where they do nothing (each was ignored without a word): --seed when no K support
    images are drawn, --margin when no query is a box crop (a folder or a photo is embedded whole), --min-score
    when no query is a detection (`query` None: a predictions file)."""
    from bbuvl.fewshot.queries import is_predictions_file

    refuse_unused(ctx, seeded, "--shots K", "seed")
    if query is None:
        return
    crops = query.is_file() and query.suffix.lower() == ".jsonl"
    refuse_unused(ctx, crops, "a dataset or predictions JSONL as --query", "margin")
    try:
        detections = crops and is_predictions_file(query)
    except (OSError, ValueError):  # unreadable: iter_queries names what is wrong with it
        return
    refuse_unused(ctx, detections, "a predictions JSONL as --query", "min_score")


def _claim(command: str, inputs: Mapping[str, Path | None], files: list[Path] | None = None,
           folders: list[Path] | None = None, overwrite: bool = False,
           own: Mapping[Path, Callable[[str], bool]] | None = None) -> None:
    """Claim the outputs (an input another command is still writing is refused there), and note a predictions file
    a killed `bbuvl predict` left unfinished (its photos past the kill have no boxes to crop)."""
    from bbuvl.eval.in_progress import unfinished_predictions_note

    claim_outputs(command, inputs, files or [], folders or [], overwrite, own)
    for what in ("--query", "--predictions"):
        if (path := inputs.get(what)) is not None and (unfinished := unfinished_predictions_note(path)):
            err_console.print(f"[yellow]note:[/] {escape(unfinished)}", soft_wrap=True)


def _embedded(support: int, support_cached: int, queries: int, queries_cached: int) -> str:
    """What was embedded and what came from the cache, support and queries apart: a support photo replaced or added
    since the last run is the one support embedding computed, which the two summed hid among the queries'."""
    return (f"embeddings: support {support} computed, {support_cached} from the cache; queries {queries} computed, "
            f"{queries_cached} from the cache")


def _refuse_running_folder(out: Path) -> None:
    """Refuse, before any work, an --out folder that is the folder the command runs in, or holds it: eval writes it
    anew, and `outputs.replacing` would refuse it only once the results were computed."""
    from bbuvl.atomic import refuse_current_folder

    try:
        refuse_current_folder(out)
    except OSError as e:
        fail(f"--out {e.strerror}")


def _shots_label(name: str) -> str:
    return "1 shot" if name == "1" else f"{name} shots"


def _print_messages(title: str, messages: list[str], limit: int = 10) -> None:
    """The first `limit` messages in yellow, then how many more."""
    if not messages:
        return
    err_console.print(f"[yellow]{title}: {len(messages)}[/]")
    print_first(messages, limit=limit, prefix="[yellow]  ", out=err_console)


@app.command("tiny-backbone")
def tiny_backbone_cmd(
    kind: str = typer.Argument(..., help="clip, dinov2 or resnet."),
    out: Path = typer.Argument(..., help="Folder to write (config.json, preprocessor_config.json, weights)."),
    # Its patch is a quarter of the side, so the weights grow with the side squared: 100000 asked torch for 240 GB.
    image_size: int = typer.Option(32, "--image-size", callback=int_range(8, 1024), help="Input side of the tiny model."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
    full: bool = typer.Option(False, "--full", help="Stock architecture and preprocessing (ViT-B/32, DINOv2-base, "
                                                    "ResNet-50) with random weights, for benchmarks."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Write a random-weight backbone that loads like a real checkpoint (offline tests and benchmarks)."""
    # Replaced whole: --overwrite gives up the files its last run wrote, never one put there since
    claim_outputs("fewshot tiny-backbone", {}, folders=[out], overwrite=overwrite, listed=[out])
    if overwrite:  # the folder is replaced whole: never one of someone else's (outputs.check_replaced_whole)
        with user_errors(ValueError):
            check_replaced_whole(out, "fewshot tiny-backbone")
    from transformers.utils import logging as hf_logging

    from bbuvl.atomic import atomic_folder
    from bbuvl.tiny.backbones import tiny_backbone

    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    with user_errors(), atomic_folder(out) as tmp:  # whole, or the previous folder kept
        tiny_backbone(kind, tmp, image_size=image_size, seed=seed, full=full)
    console.print(f"[green]saved[/] random-weight {kind} backbone to {escape(str(out))} in {time.perf_counter() - start:.1f} s")


def _refuse_query_no_csv_holds(query: Path, table: str) -> None:
    """Fail, before any work, when `--query` is no UTF-8 text (a folder named in GBK bytes): `table` names each query
    photo by a path under it, and a .csv holds UTF-8 text only; the codec error came once every query was answered."""
    from bbuvl.data.text import not_text

    # A dataset's or a predictions file's photos are named by their full paths, where the folder it runs in shows too
    named = os.path.abspath(query) if query.suffix.lower() == ".jsonl" else str(query)
    if (problem := not_text(named)) is not None:
        fail(f"--query {problem}; {table} names each query photo by its path, and a .csv holds UTF-8 text only")


@app.command("classify")
def classify(
    ctx: typer.Context,
    support: Path = SUPPORT,
    query: Path = typer.Option(..., "--query", help="Query folder, dataset JSONL (box crops), predictions JSONL or image."),
    backbone: str = BACKBONE,
    out: Path = typer.Option(..., "--out", metavar=FILE_OUT, help="Results file, .csv or .jsonl (jsonl also has every class score)."),
    threshold: float = THRESHOLD,
    mode: str = MODE,
    shots: Optional[int] = SHOTS,
    seed: int = SEED,
    margin: float = MARGIN,
    min_score: float = MIN_SCORE,
    batch_size: int = BATCH,
    device: str = DEVICE,
    cache: Optional[Path] = CACHE,
    no_cache: bool = NO_CACHE,
    overwrite: bool = OVERWRITE,
) -> None:
    """Classify query images or box crops against the support set; weak matches become Unknown."""
    from bbuvl.fewshot.batch import classified_rows, fit_support, write_rows
    from bbuvl.fewshot.embed import EmbedReport, embed_items
    from bbuvl.fewshot.queries import answered, iter_queries
    from bbuvl.fewshot.support import read_support

    if out.suffix.lower() not in (".csv", ".jsonl"):
        fail(f"--out must end in .csv or .jsonl, got '{out.name}'")
    if out.suffix.lower() == ".csv":
        _refuse_query_no_csv_holds(query, "a .csv --out (a .jsonl keeps such a path as JSON escapes)")
    _refuse_unused_options(ctx, query, shots is not None)
    inputs = {"--support": support, "--query": query, "--backbone": _path(backbone), "--cache": cache}
    _check_cache(cache, no_cache, inputs, [out])
    _claim("fewshot classify", inputs, [out], overwrite=overwrite)
    _mode(mode)
    bb, store = _backbone(backbone, device), _cache(cache, no_cache)
    support_report, query_report, problems = EmbedReport(), EmbedReport(), []
    counts: dict[str, int] = {}
    with user_errors():
        support_set = read_support(support)
        problems.extend(filter(None, [support_set.left_out]))
        fitted, warnings = fit_support(support_set, [shots], seed, bb, store, batch_size, support_report, mode)  # type: ignore[arg-type]
        items = iter_queries(query, problems, margin=margin, min_score=min_score)
        with _progress("classifying") as bar:
            task = bar.add_task("queries", total=None)

            def count(row: dict) -> None:
                """Tally the answer and move the spinner."""
                counts[row["label"]] = counts.get(row["label"], 0) + 1
                bar.advance(task)

            rows = classified_rows(fitted[0].classifier, embed_items(items, bb, store, batch_size, query_report), threshold)
            # Every query unreadable is an error, not an empty result; the list is read when the rows run out.
            n = write_rows(answered(rows, query, problems, query_report.skipped), out, count)
    _print_messages("warnings", warnings)
    _print_messages("skipped", problems + support_report.skipped + query_report.skipped)
    table = Table(show_edge=False, title=f"{n} queries, threshold {threshold}", title_justify="left")
    table.add_column("answer")
    table.add_column("queries", justify="right")
    for label, k in sorted(counts.items(), key=lambda kv: -kv[1]):
        table.add_row(escape(label), str(k))
    console.print(table)
    console.print(_embedded(support_report.embedded, support_report.cached, query_report.embedded, query_report.cached))
    console.print(f"[green]wrote[/] {escape(str(out))}")


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    support: Path = SUPPORT,
    query: Path = typer.Option(..., "--query", help="Labelled queries: folder <class>/*.jpg or dataset JSONL (box crops). "
                                                   "A class without support counts as Unknown."),
    backbone: str = BACKBONE,
    out: Path = typer.Option(..., "--out", help="Results folder (CSV tables, summary.json, PNG plots)."),
    shots: str = typer.Option("1,5,10", "--shots", help="Support images per class to try, e.g. 1,5,10 (or 'all')."),
    thresholds: str = typer.Option("0.4:0.9:0.05", "--thresholds", help="START:STOP:STEP (stop included) or a comma list."),
    mode: str = MODE,
    seed: int = SEED,
    margin: float = MARGIN,
    level: Optional[int] = typer.Option(None, "--level", callback=int_range(1), help="Cut dataset labels, and the support classes answered, to this many levels (1 = category)."),
    batch_size: int = BATCH,
    device: str = DEVICE,
    cache: Optional[Path] = CACHE,
    no_cache: bool = NO_CACHE,
    overwrite: bool = OVERWRITE,
) -> None:
    """Accuracy, balanced accuracy, macro P/R/F1, MCC and fall-out for every (shots, threshold), as tables and plots."""
    from bbuvl.fewshot.evaluate import parse_shots, parse_thresholds, run_eval, threshold_name, written_by_fewshot_eval
    from bbuvl.outputs import replacing

    with user_errors():
        shot_list, threshold_list = parse_shots(shots), parse_thresholds(thresholds)
    _refuse_running_folder(out)
    _refuse_query_no_csv_holds(query, "--out's queries.csv")
    _refuse_unused_options(ctx, query, any(k is not None for k in shot_list))
    inputs = {"--support": support, "--query": query, "--backbone": _path(backbone), "--cache": cache}
    _check_cache(cache, no_cache, inputs, [out])
    # --out is set aside whole below: --overwrite gives up its tables and plots, never what lies among them
    _claim("fewshot eval", inputs, folders=[out], overwrite=overwrite, own={out: written_by_fewshot_eval})
    if overwrite:  # nor a file of the user's where it writes its folder
        with user_errors(ValueError):
            check_replaced_whole(out, "fewshot eval")
    _mode(mode)
    bb, store = _backbone(backbone, device), _cache(cache, no_cache)
    # A re-run writes the folder anew: another run's confusion tables (other shots, thresholds) would stay beside its own.
    with user_errors(), replacing([out]), _progress("embedding queries") as bar:
        task = bar.add_task("queries", total=None)
        summary = run_eval(support, query, bb, out, shot_list, threshold_list, mode, seed, margin, level, store,  # type: ignore[arg-type]
                           batch_size, on_progress=lambda stage, done: bar.update(task, completed=done))
    _print_messages("warnings", summary["warnings"])
    _print_messages("skipped", summary["problems"] + summary["skipped"])
    q = summary["queries"]
    console.print(f"{q['evaluated']} queries ({q['unknown_truth']} of classes without support -> Unknown), "
                  f"{len(summary['classes'])} classes, backbone {bb.key}")
    names = list(summary["accuracy_table"])
    table = Table(title="accuracy per threshold (columns: support images per class)", title_justify="left")
    table.add_column("threshold")
    for name in names:
        table.add_column(_shots_label(name), justify="right")
    for t in threshold_list:
        table.add_row(threshold_name(t), *(f"{summary['accuracy_table'][name][threshold_name(t)]:.3f}" for name in names))
    console.print(table)
    for name in names:
        b = summary["best"][name]
        fallout = "n/a" if b["fallout"] is None else f"{b['fallout']:.3f}"
        console.print(f"{_shots_label(name)}: best macro F1 {b['macro_f1']:.3f} at threshold {threshold_name(b['threshold'])} "
                      f"(accuracy {b['accuracy']:.3f}, balanced {b['balanced_accuracy']:.3f}, fall-out {fallout})")
    if len(threshold_list) > 1:
        # The threshold is chosen on the very queries it is scored on: what it reaches on them is in-sample
        console.print("best: the threshold is chosen on these queries, so its numbers are an upper bound for new "
                      "photos; choose it on other labelled crops to know what it reaches there")
    e = summary["embedding"]
    console.print(_embedded(e["support"]["embedded"], e["support"]["cached"], e["queries"]["embedded"],
                            e["queries"]["cached"]) + (f" ({escape(str(e['cache']))})" if e["cache"] else " (cache off)"))
    console.print(f"[green]wrote[/] {escape(str(out))}/: metrics.csv, per_class.csv, queries.csv, confusion/, summary.json, "
                  f"accuracy_vs_threshold.png, fallout_vs_threshold.png, confusion_best.png ({summary['seconds']:.1f} s)")


@app.command("label")
def label(
    ctx: typer.Context,
    predictions: Path = typer.Option(..., "--predictions", help="Predictions JSONL from `bbuvl predict`."),
    support: Path = SUPPORT,
    backbone: str = BACKBONE,
    out: Path = typer.Option(..., "--out", metavar=FILE_OUT, help="Dataset JSONL to write (image paths relative to it)."),
    threshold: float = THRESHOLD,
    unknown: str = typer.Option("drop", "--unknown", help="Unknown boxes: 'drop' them, or 'flag' them (kept under "
                                                          "the detector's label, extra.fewshot = Unknown)."),
    hierarchy: Optional[Path] = typer.Option(None, "--hierarchy", help="Label hierarchy JSON that names the support "
                                                                      "classes (default: the shipped one)."),
    mode: str = MODE,
    shots: Optional[int] = SHOTS,
    seed: int = SEED,
    margin: float = MARGIN,
    min_score: float = MIN_SCORE,
    batch_size: int = BATCH,
    device: str = DEVICE,
    cache: Optional[Path] = CACHE,
    no_cache: bool = NO_CACHE,
    overwrite: bool = OVERWRITE,
) -> None:
    """Label detected boxes by few-shot class and write a dataset that `bbuvl data check` accepts."""
    from bbuvl.data.labels import Hierarchy
    from bbuvl.data.text import as_argument
    from bbuvl.fewshot.batch import fit_support
    from bbuvl.fewshot.embed import EmbedReport
    from bbuvl.fewshot.label import UNKNOWN_POLICIES, auto_label, check_classes, refuse_repeated_photos
    from bbuvl.fewshot.support import read_support

    if unknown not in UNKNOWN_POLICIES:
        fail(f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got '{unknown}'")
    if out.suffix.lower() != ".jsonl":  # a dataset named data.csv was written as JSONL lines under that name
        fail(f"--out {out}: fewshot label writes a dataset JSONL; name it .jsonl")
    _refuse_unused_options(ctx, None, shots is not None)
    inputs = {"--predictions": predictions, "--support": support, "--backbone": _path(backbone), "--hierarchy": hierarchy,
              "--cache": cache}
    _check_cache(cache, no_cache, inputs, [out])
    _claim("fewshot label", inputs, [out], overwrite=overwrite)
    _mode(mode)
    with user_errors():
        h = Hierarchy.load(hierarchy)
        support_set = read_support(support)
        check_classes(support_set.classes, h)  # before loading a backbone or embedding anything
        refuse_repeated_photos(predictions)
    bb, store = _backbone(backbone, device), _cache(cache, no_cache)
    support_report = EmbedReport()
    with user_errors(), _progress("labelling") as bar:
        bar.add_task("boxes", total=None)
        fitted, warnings = fit_support(support_set, [shots], seed, bb, store, batch_size, support_report, mode)  # type: ignore[arg-type]
        report = auto_label(predictions, fitted[0].classifier, bb, out, threshold, unknown, h, margin,  # type: ignore[arg-type]
                            min_score, store, batch_size)
    _print_messages("warnings", warnings)
    _print_messages("changed to fit the dataset format", report.fixed)
    _print_messages("skipped", list(filter(None, [support_set.left_out])) + report.problems + support_report.skipped)
    console.print(f"{report.labelled} boxes labelled by few-shot class, {report.unknown_dropped} Unknown dropped, "
                  f"{report.unknown_flagged} Unknown flagged, {report.below_min_score} below --min-score")
    # The check as it can be pasted: quoted, and with the hierarchy that names the new classes (the shipped one refused
    # them); the name escaped, as a `[red]` in it was eaten as markup.
    check = shlex.join(["bbuvl", "data", "check", as_argument(out), *(["--hierarchy", as_argument(hierarchy)] if hierarchy
                                                                       else [])])
    console.print(f"[green]wrote[/] {escape(str(out))}: {report.images_written} photos ({report.images_skipped} left out); "
                  f"check it with `{escape(check)}`", soft_wrap=True)  # never wrapped inside a path: pasted whole
