"""`bbuvl doctor ...`: find why a run will go wrong, or went wrong, before it costs a day (docs/design.md)."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bbuvl.atomic import write_text_atomic
from bbuvl.cli.common import (FILE_OUT, OVERWRITE_HELP, check_device, claim_outputs, command_group, console, fail, finite_range, int_range,
                              print_first, user_errors)
from bbuvl.config import Config, ConfigError, ConfigOrigin, load_located_config
from bbuvl.data.jsonfile import dumps_json
from bbuvl.paths import real_path

if TYPE_CHECKING:  # data.check reads photos, diagnostics.probe loads torch: imported when a command runs
    from bbuvl.data.check import Problem
    from bbuvl.diagnostics.probe import ProbeRows

app = command_group(help="Diagnose datasets, checkpoints and memory; look inside the detection head.", no_args_is_help=True)

OVERWRITE = typer.Option(False, "--overwrite", help=OVERWRITE_HELP)
_STATUS = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]",
           "error": "[bold red]error[/]", "warning": "[yellow]warning[/]"}


def _config(path: Path | None) -> Config:
    return _located_config(path)[0]


def _located_config(path: Path | None) -> tuple[Config, ConfigOrigin]:
    try:
        return load_located_config(path)
    except ConfigError as e:
        fail(str(e))
        raise


def _progress(label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console)


def _predictor(checkpoint: Path, device: str | None, command: str,  # noqa: ANN202 - a Predictor (lazily: torch)
               labels_from: Path | None = None, needs_head: bool = False):
    """The checkpoint's predictor; a plain model folder answers with the labels of `labels_from` (a dataset JSONL),
    and is refused where there is none (it has no prompt of its own). `needs_head`: a checkpoint without a detection
    head is refused naming it, before its weights load."""
    logging.basicConfig(level=logging.WARNING)
    check_device(device)
    from bbuvl.data.labels import Hierarchy
    from bbuvl.data.layout import data_labels
    from bbuvl.infer.predictor import Predictor
    from bbuvl.model.checkpoint import is_plain_model_folder, read_model_folder, start_folder_problem
    from bbuvl.model.export import LABELS_FILE as EXPORT_LABELS

    _refuse_unfinished(checkpoint)
    with user_errors(ValueError, OSError):
        if not is_plain_model_folder(checkpoint):
            folder = read_model_folder(checkpoint)  # read once: its config says whether it has a head, then it loads
            if needs_head and not folder.cfg.detection.enabled:
                fail(f"{checkpoint}: this checkpoint has no detection head (detection.enabled was false): `bbuvl doctor "
                     f"{command}` looks inside one")
            return Predictor.load(folder, device=device)
        if problem := start_folder_problem(checkpoint):  # before transformers names a header or a video processor
            fail(f"{checkpoint}: {problem}")
        if labels_from is None and (checkpoint / EXPORT_LABELS).is_file():  # an export's own vocabulary
            from bbuvl.diagnostics.model_doctor import plain_as_predicted

            return Predictor.load(plain_as_predicted(checkpoint), device=device)
        if labels_from is None:
            fail(f"{checkpoint}: a plain model folder (no bbuvl.yaml): `bbuvl doctor {command}` reads a checkpoint "
                 "written by `bbuvl train`" + (" (or a model folder with --data)" if command == "coordinates" else ""))
        labels = data_labels([labels_from], Hierarchy.load())
        return Predictor.load(read_model_folder(checkpoint, labels=labels), device=device)


def _check_plot(out: Path) -> None:
    """Refuse a plot path whose suffix names no picture format, before the model loads (called after the outputs are
    claimed: an output that is one of the inputs is named as that first)."""
    from bbuvl.diagnostics.plots import plot_format

    with user_errors(ValueError):
        plot_format(out)


def _refuse_being_written(inputs: dict[str, Path | None]) -> None:
    """Refuse a checkpoint, dataset or photo another command (train, convert, predict...) is still writing: what doctor
    found in it would describe a moment of that run. For the commands that claim no output; `claim_outputs` checks
    the inputs of those that do."""
    from bbuvl.outputs import refuse_inputs_being_written

    with user_errors(ValueError):
        refuse_inputs_being_written(inputs)


def _refuse_unfinished(checkpoint: Path) -> None:
    """Refuse a run's checkpoint-N that a killed `bbuvl train` saved half, naming it (`unfinished_save`), before it
    loads: the weights HF writes first load, and every check passed on a folder `--resume` skips."""
    from bbuvl.diagnostics.model_doctor import unfinished_save

    if (why := unfinished_save(checkpoint)) is not None:
        fail(why)


def _refuse_diverged(checkpoint: Path, found: str) -> None:
    """End a doctor command that met NaN or inf in what the checkpoint computes (`found`, in words) with status 1 and
    why, as far as the run's records tell (`divergence_cause`): one guard for features, attention and landscape.
    Attention printed a table of NaN (its peak patch the argmax of NaN), wrote its plot and exited 0, and the others
    sent the user to `doctor model`, which then said its weights were finite."""
    from bbuvl.diagnostics.model_doctor import divergence_cause

    fail(f"{checkpoint}: {found}: {divergence_cause(checkpoint)}", code=1)


def _check_given(inputs: dict[str, Path | None]) -> None:
    """Name a photo or dataset that is not there before the checkpoint loads (minutes on a real model); what is in
    one is read, and its problems named, after."""
    for what, path in inputs.items():
        if path is not None and not path.exists():
            fail(f"{path}: no such file or folder ({what})")
        if path is not None and what in ("--data", "DATASET") and path.is_dir():  # said once the model had loaded
            files = [str(path / n) for n in ("val.jsonl", "train.jsonl") if (path / n).is_file()]
            fail(f"{path}: a folder, not a JSONL dataset file ({what}): give "
                 + (f"one of its files ({', '.join(files)})" if files else "a dataset's val.jsonl or train.jsonl"))


def _where(problem: Problem) -> str:
    """A finding as `file:line: message`, or `file: message` for the file as a whole (line 0 is no line of it)."""
    return str(problem) if problem.line else f"{problem.file}: {problem.message}"


def _rows(source: Path, samples: int) -> ProbeRows:
    """The samples of `source` to probe with, each photo left out named: called before the checkpoint loads where the
    dataset is given, so that a malformed line is named in seconds, not once a real model has loaded (minutes)."""
    from bbuvl.diagnostics.probe import probe_rows

    with user_errors(OSError, ValueError):
        chosen = probe_rows(source, samples)
    print_first([f"{s}: left out" for s in chosen.skipped],
                f" photos of {source} that cannot be read were left out; `bbuvl doctor data {source}` lists every one")
    return chosen


def _given_photos(images: Path, batch_size: int) -> list[str]:
    """The photos of `doctor memory --images` (a photo, a folder or a dataset JSONL), each opened before the checkpoint
    loads: one missing or no picture was named once every weight had loaded, and a dataset's by its path alone, not
    its `file:line`. Whether the model's frame holds each is checked once it has loaded (`prepare_named`)."""
    from bbuvl.data.images import IMAGE_SUFFIXES, open_image
    from bbuvl.data.schema import iter_dataset
    from bbuvl.infer.batch import list_inputs

    with user_errors(OSError, ValueError):
        photos = [str(images)] * batch_size if images.suffix.lower() in IMAGE_SUFFIXES else list_inputs(images)[:batch_size]
        # a JSONL lists its photos in file order, one a line (list_inputs refused a malformed line or one listed twice)
        where = ([f"{images}:{row.line}: " for row, _ in zip(iter_dataset(images), photos)] if images.is_file()
                 and images.suffix.lower() not in IMAGE_SUFFIXES else [""] * len(photos))
    for photo, at in dict(zip(photos, where)).items():
        try:
            with open_image(photo, decode=False):
                pass
        except (OSError, ValueError) as e:
            fail(f"{at}{e}")
    return photos


def _model_folder(path: Path) -> str | None:
    """What a folder holding a model and no dataset is ('a checkpoint folder', 'a model folder'), else None."""
    from bbuvl.data.layout import TRAIN
    from bbuvl.model.checkpoint import is_plain_model_folder

    if not path.is_dir() or (path / TRAIN).exists() or not any((path / n).is_file() for n in ("config.json",
                                                                                               "adapter_config.json")):
        return None
    return "a model folder" if is_plain_model_folder(path) else "a checkpoint folder"


def _name(checkpoint: Path) -> str:
    """`run/final` rather than just `final` in picture titles."""
    parts = real_path(checkpoint).parts
    return "/".join(parts[-2:])


def _no_dataset(cfg: Config) -> str:
    """Why there is no dataset to probe with, and what to do."""
    return (f"no dataset to probe with: neither the run's data.val nor data.train is here ({cfg.data.val}, "
            f"{cfg.data.train}: a checkpoint copied from elsewhere?); pass --data DATASET.jsonl")


def _default_dataset(cfg: Config) -> Path | None:
    """The run's validation set, else its training set, when the files exist."""
    return next((Path(p) for p in (cfg.data.val, cfg.data.train) if p and Path(p).exists()), None)


@app.command("data")
def data(
    dataset: Path = typer.Argument(..., help="Dataset folder (train/val/teachers.jsonl) or one JSONL file."),
    config: Path = typer.Option(None, "--config", "-c",
                                help="Run config (min/max pixels, token budgets, batch size); default: built-in defaults."),
    checkpoint: Path = typer.Option(None,
                                    help="Compare labels with this checkpoint's prompt (default: the config's train+val labels)."),
    json_out: Path = typer.Option(None, "--json", metavar=FILE_OUT, help="Also write the findings as JSON here."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Vision tokens per sample and batch, image files that do not match their records, EXIF rotation, label vocabulary.

    Exits with status 1 when there are errors (warnings alone exit 0). Never uses the network: without the model,
    the checks that need it are skipped, with the reason.
    """
    # Before the hub library is imported (it reads this once): nothing below may download or retry, whatever asks.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from bbuvl.diagnostics.data_doctor import diagnose_data

    _refuse_being_written({"DATASET": dataset, "--config": config, "--checkpoint": checkpoint})
    if (what := _model_folder(dataset)) is not None:  # it said 'train.jsonl: missing', as if a dataset had lost it
        fail(f"{dataset}: {what}, not a dataset: " + (f"`bbuvl doctor model {dataset}` checks it" if what == "a model folder"
             else f"`bbuvl doctor data DATASET --checkpoint {dataset}` compares a dataset's labels with its prompt; "
                  f"`bbuvl doctor model {dataset}` checks the model"))
    if json_out:
        claim_outputs("doctor data", {"DATASET": dataset, "--config": config, "--checkpoint": checkpoint}, [json_out],
                      overwrite=overwrite)
    cfg, origin = _located_config(config)
    prompt_labels = None
    if checkpoint is not None:
        from bbuvl.model.checkpoint import Prompt, is_plain_model_folder

        if not checkpoint.is_dir():
            fail(f"{checkpoint}: {'a file, not a' if checkpoint.exists() else 'no such'} checkpoint folder (--checkpoint)")
        if is_plain_model_folder(checkpoint):  # said 'prompt.json: no such prompt file', as if a file were lost
            fail(f"{checkpoint}: a plain model folder (no bbuvl.yaml) has no prompt of its own to compare the labels "
                 "with (--checkpoint); give a checkpoint written by `bbuvl train`, or leave --checkpoint out")
        with user_errors(OSError, ValueError):
            prompt_labels = Prompt.load(checkpoint).labels
    with user_errors(OSError, ValueError):
        report = diagnose_data(dataset, cfg, prompt_labels, origin=origin)
    if report.counted:
        table = Table(title=f"vision tokens at min_pixels={cfg.model.min_pixels}, max_pixels={cfg.model.max_pixels}")
        for col in ("file", "samples", "min", "median", "max", f"photos over {cfg.model.max_vision_tokens}"):
            table.add_column(col, justify="left" if col == "file" else "right")
        for t in report.tokens:
            s = t.stats
            table.add_row(escape(Path(t.file).name), str(len(t.per_sample)), f"{s['min']:.0f}", f"{s['median']:.0f}",
                          f"{s['max']:.0f}", f"[red]{t.over_budget}[/]" if t.over_budget else "0")
        console.print(table)
        console.print(f"costliest batch ({report.batch_size} samples with teachers): {report.worst_batch} vision tokens "
                      f"(budget model.max_vision_tokens_per_batch={cfg.model.max_vision_tokens_per_batch})")
    console.print(f"labels: {len(report.labels)} in the data, {len(report.prompt_labels)} in the prompt vocabulary")
    console.print(escape(report.lengths), style=None if report.counted else "yellow", highlight=False)
    for p in report.problems:
        console.print(f"{_STATUS[p.severity]} {escape(_where(p))}", markup=True, highlight=False)
    errors, warnings = len(report.errors), len(report.problems) - len(report.errors)
    if json_out:
        write_text_atomic(json_out, dumps_json({
            "errors": errors, "warnings": warnings,  # the counts the last line prints
            "problems": [{"file": p.file, "line": p.line, "severity": p.severity, "message": p.message} for p in report.problems],
            "tokens": {t.file: {"per_sample": t.per_sample, "over_budget": t.over_budget} for t in report.tokens}
            if report.counted else None,
            "worst_batch": report.worst_batch if report.counted else None, "labels": report.labels, "prompt_labels": report.prompt_labels,
            "lengths": report.lengths,
        }, indent=1))
    console.print(f"doctor data: {errors} error(s), {warnings} warning(s)")
    if errors:
        raise typer.Exit(1)


@app.command("model")
def model(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder written by `bbuvl train`, or a plain model folder "
                                      "(checked before any training)."),
    config: Path = typer.Option(None, "--config", "-c",
                                help="Config a run would continue with, or start from on a plain model folder "
                                     "(default: the checkpoint's bbuvl.yaml)."),
    image: Path = typer.Option(None, help="Image to run the checks on (default: the run's first training photo)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1 ..."),
) -> None:
    """Parameter groups, stored tensors, special tokens, image-pad count, chat template, detection head, coordinate contract.

    Exits with status 1 when a check fails.
    """
    logging.basicConfig(level=logging.ERROR)
    from bbuvl.diagnostics.model_doctor import diagnose_model

    check_device(device)
    cfg = _config(config) if config else None
    _refuse_being_written({"CHECKPOINT": checkpoint, "--config": config, "--image": image})
    _refuse_unfinished(checkpoint)
    _check_given({"--image": image})
    with user_errors(OSError, ValueError):
        report = diagnose_model(checkpoint, cfg, image, device)
    if report.groups:
        groups = Table(title="parameters per learning-rate group")
        for col in ("group", "trainable", "frozen", "tensors"):
            groups.add_column(col, justify="left" if col == "group" else "right")
        for g, s in report.groups.items():
            groups.add_row(g, f"{s.trainable:,}", f"{s.frozen:,}", str(s.tensors))
        console.print(groups)
    checks = Table(title=f"doctor model: {escape(str(checkpoint))}")
    for col in ("check", "status", "detail"):
        checks.add_column(col, overflow="fold")
    for c in report.checks:
        checks.add_row(escape(c.name), _STATUS[c.status], escape(c.detail))
    console.print(checks)
    if report.failed:
        console.print(f"[bold red]{len(report.failed)} check(s) failed[/]: {escape(', '.join(c.name for c in report.failed))}")
        raise typer.Exit(1)
    console.print("[green]all checks passed[/]")


@app.command("memory")
def memory(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder written by `bbuvl train`."),
    n: int = typer.Option(1000, "--n", help="Inference iterations on the same images (at least 5: 2 warm up).",
                          callback=int_range(5)),
    mode: str = typer.Option("head", help="generate or head."),
    images: Path = typer.Option(None, help="Image, image folder or dataset JSONL (default: the run's validation or training set)."),
    batch_size: int = typer.Option(1, help="Images per iteration.", callback=int_range(1)),
    tolerance_mb: float = typer.Option(16.0, help="Fitted growth over the run above which memory counts as leaking.",
                                      callback=finite_range(0)),
    out: Path = typer.Option(Path("doctor-memory.png"), metavar=FILE_OUT, help="PNG plot of memory per iteration."),
    device: str = typer.Option(None, help="cpu, cuda ... (default: cuda when available)."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Repeat inference on the same images, sampling resident (and CUDA allocated) memory: flat or leaking.

    Exits with status 1 when memory leaks.
    """
    from bbuvl.data.images import IMAGE_SUFFIXES
    from bbuvl.diagnostics.memory import inference_memory
    from bbuvl.diagnostics.model_doctor import sample_image
    from bbuvl.diagnostics.plots import plot_memory
    from bbuvl.diagnostics.probe import prepare_named
    from bbuvl.infer.batch import list_inputs

    if mode not in ("generate", "head"):
        fail(f"--mode must be generate or head, got '{mode}'")
    check_device(device)  # a bad option fails before anything is claimed
    claim_outputs("doctor memory", {"CHECKPOINT": checkpoint, "--images": images}, [out], overwrite=overwrite)
    _check_plot(out)
    _check_given({"--images": images})
    given = _given_photos(images, batch_size) if images is not None else None
    predictor = _predictor(checkpoint, device, "memory")
    with user_errors(ValueError):
        predictor.check_mode(mode)  # a mode this checkpoint cannot run fails once, before any iteration
    source = images or _default_dataset(predictor.cfg)
    with user_errors(OSError, ValueError):
        if given is not None:
            inputs = given
        elif source is None:
            # The run's photos are not at hand (a checkpoint copied from elsewhere): its synthetic picture stands in.
            inputs = [sample_image(predictor.cfg)] * batch_size
            console.print(f"[yellow]note:[/] neither the run's data.val nor data.train is here "
                          f"({escape(str(predictor.cfg.data.val))}, {escape(str(predictor.cfg.data.train))}): memory is "
                          "measured on a synthetic 320x240 picture; pass --images for your own photos", soft_wrap=True)
        elif source.suffix.lower() in IMAGE_SUFFIXES:
            inputs = [str(source)] * batch_size
        else:
            inputs = list_inputs(source)[:batch_size]
    if not inputs:
        fail(f"{source}: no images")
    with user_errors(OSError, ValueError):
        # each photo once, before any iteration: one that cannot be used is named (a picture is no key: by identity)
        for path in {p if isinstance(p, str) else id(p): p for p in inputs}.values():
            prepare_named(predictor, path)
    with _progress(f"memory ({mode})") as progress, user_errors(ValueError, RuntimeError):
        task = progress.add_task("memory", total=n)
        trace = inference_memory(predictor, inputs, n, mode, tolerance_mb=tolerance_mb,
                                 on_progress=lambda done, total: progress.update(task, completed=done))
    table = Table(title=f"doctor memory: {n} x {mode} on {len(inputs)} image(s), {trace.seconds:.1f} s, warm-up {trace.warmup}")
    for col in ("memory", "first (MB)", "last (MB)", "trend (MB / 1000 it)", "verdict"):
        table.add_column(col)
    for metric, t in trace.trends().items():
        v = trace.samples[metric]
        table.add_row(metric, f"{v[trace.warmup]:.1f}", f"{v[-1]:.1f}", f"{t.per_1000:+.2f}",
                      "[red]leaking[/]" if t.verdict == "leaking" else "[green]flat[/]")
    console.print(table)
    console.print(f"plot: {escape(str(plot_memory(trace, out, f'{mode} mode, {_name(checkpoint)}')))}", soft_wrap=True)
    if trace.verdict == "leaking":
        raise typer.Exit(1)


@app.command("features")
def features(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder with a detection head."),
    data: Path = typer.Option(None, help="Dataset JSONL to probe with (default: the run's validation or training set)."),
    samples: int = typer.Option(8, help="Photos to probe with.", callback=int_range(1)),
    out: Path = typer.Option(Path("doctor-features.png"), metavar=FILE_OUT, help="PNG of dead units and activations per layer."),
    device: str = typer.Option(None, help="cpu, cuda ... (default: cuda when available)."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Activation statistics and dead units per layer of the detection head and its adapters.

    Exits with status 1 when an activation is NaN or inf (the run diverged, or the weights are damaged).
    """
    from bbuvl.diagnostics.features import feature_stats
    from bbuvl.diagnostics.plots import plot_features
    from bbuvl.diagnostics.probe import encode_rows

    check_device(device)
    claim_outputs("doctor features", {"CHECKPOINT": checkpoint, "--data": data}, [out], overwrite=overwrite)
    _check_plot(out)
    _check_given({"--data": data})
    rows = _rows(data, samples) if data is not None else None
    predictor = _predictor(checkpoint, device, "features", needs_head=True)
    source = data or _default_dataset(predictor.cfg)
    if source is None:
        fail(_no_dataset(predictor.cfg))
    rows = rows or _rows(source, samples)
    with user_errors(OSError, ValueError):
        probe = encode_rows(predictor, rows, predictor.cfg.inference.batch_size)
        stats = feature_stats(predictor.model, probe.batches)
    table = Table(title=f"doctor features: {escape(str(checkpoint))} on {probe.photos} photos of {escape(str(source))}")
    for col in ("layer", "units", "mean", "std", "min", "max", "dead"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for s in stats:
        dead = f"[red]{s.dead}[/]" if s.dead else "0"
        table.add_row(s.name, str(s.units), f"{s.mean:.3g}", f"{s.std:.3g}", f"{s.min:.3g}", f"{s.max:.3g}", dead)
    console.print(table)
    from bbuvl.diagnostics.features import probed_layers

    if broken := [s for s in stats if s.nonfinite]:
        # NaN read as "dead 0" on every layer, exit 0, and a note blaming the probe photos for the idle captions
        _refuse_diverged(checkpoint, f"{len(broken)} of {len(stats)} layers hold NaN or inf activations (the first: "
                                     f"{broken[0].name}, {broken[0].nonfinite:,} values)")
    if idle := [n for n, _, _ in probed_layers(predictor.model.detection_head) if n not in {s.name for s in stats}]:
        console.print(f"note: no value reached {escape(', '.join(idle))} on these photos (the caption decoder reads only "
                      "queries matched to an object of their ground truth): probe photos with objects", soft_wrap=True)
    console.print(f"plot: {escape(str(plot_features(stats, out, _name(checkpoint))))}", soft_wrap=True)


@app.command("attention")
def attention(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder with a detection head."),
    image: Path = typer.Argument(..., help="Image to look at."),
    top_k: int = typer.Option(4, help="How many of the most confident queries to show.", callback=int_range(1)),
    layer: int = typer.Option(-1, help="Decoder layer (default: the last)."),
    out: Path = typer.Option(Path("doctor-attention.png"), metavar=FILE_OUT, help="PNG of the attention maps."),
    font_path: Path = typer.Option(None, help="A TTF/TTC font with Chinese glyphs for captions."),
    device: str = typer.Option(None, help="cpu, cuda ... (default: cuda when available)."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Decoder cross-attention of the top queries over the image, with their boxes and captions.

    Exits with status 1 when the head's objectness or attention is NaN or inf (nothing is drawn then).
    """
    from bbuvl.data.images import open_image
    from bbuvl.diagnostics.attention import cross_attention
    from bbuvl.diagnostics.plots import plot_attention
    from bbuvl.eval.fonts import find_cjk_font

    check_device(device)
    claim_outputs("doctor attention", {"CHECKPOINT": checkpoint, "IMAGE": image, "--font-path": font_path}, [out],
                  overwrite=overwrite)
    _check_plot(out)
    with user_errors(OSError, ValueError):
        font = find_cjk_font(font_path)  # a --font-path that is no font is refused before the model loads
        with open_image(image, decode=False):  # so is a photo that is missing, a folder or no picture at all
            pass
    predictor = _predictor(checkpoint, device, "attention", needs_head=True)
    with user_errors(OSError, ValueError):
        maps = cross_attention(predictor, image, top_k, layer)
    if bad := [q.query for q in maps.queries if not (math.isfinite(q.score) and math.isfinite(q.vision_share)
                                                     and bool(q.heat.isfinite().all()))]:
        _refuse_diverged(checkpoint, f"the head's objectness or attention is NaN or inf for {len(bad)} of the "
                                     f"{len(maps.queries)} queries shown, so there is no map to draw")
    if font.warning:
        console.print(f"[yellow]warning[/]: {escape(font.warning)}")
    if top_k > len(maps.queries):
        console.print(f"note: --top-k {top_k}: the head has {len(maps.queries)} queries; all of them are shown")
    table = Table(title=f"doctor attention: {escape(image.name)}, decoder layer {maps.layer}")
    for col in ("query", "objectness", "on image", "peak patch (row, col)", "caption"):
        table.add_column(col)
    for q in maps.queries:
        peak = divmod(int(q.heat.flatten().argmax()), maps.grid[1])
        table.add_row(str(q.query), f"{q.score:.3f}", f"{100 * q.vision_share:.0f}%", str(peak), escape(q.caption))
    console.print(table)
    console.print(f"plot: {escape(str(plot_attention(maps, out, image.name, font)))}", soft_wrap=True)


@app.command("coordinates")
def coordinates(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder, or a plain model folder with --data (it answers "
                                      "with the labels of that data)."),
    data: Path = typer.Option(None, help="Dataset JSONL to probe with (default: the run's validation or training set)."),
    samples: int = typer.Option(200, help="Photos to probe with (one row per object of their answers).",
                                callback=int_range(1)),
    out: Path = typer.Option(None, metavar=FILE_OUT, help="Also write the R² table as JSON here."),
    device: str = typer.Option(None, help="cpu, cuda ... (default: cuda when available)."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Whether the LLM knows each box's coordinates before it writes them: cross-validated R² of a linear probe per layer.

    A measurement, not a check: exits 0 whatever the R² (its verdict on generate mode is printed).
    """
    from bbuvl.diagnostics.coordinates import COORDINATES, probe_coordinates, verdict
    from bbuvl.diagnostics.probe import encode_rows

    check_device(device)
    if out is not None and out.suffix:
        from bbuvl.diagnostics.plots import plot_format

        try:
            plot_format(out)
        except ValueError:
            pass
        else:  # the other doctor commands' --out is a plot: a JSON table under a picture's name opens as a broken picture
            fail(f"{out}: names a picture, but `doctor coordinates --out` writes the R² table as JSON; "
                 "name it .json")
    claim_outputs("doctor coordinates", {"CHECKPOINT": checkpoint, "--data": data}, [out] if out else [],
                  overwrite=overwrite)
    _check_given({"--data": data})
    rows = _rows(data, samples) if data is not None else None
    predictor = _predictor(checkpoint, device, "coordinates", labels_from=data)
    source = data or _default_dataset(predictor.cfg)
    if source is None:
        fail(_no_dataset(predictor.cfg))
    rows = rows or _rows(source, samples)
    with user_errors(OSError, ValueError):
        photos = encode_rows(predictor, rows, predictor.cfg.inference.batch_size)
        probe = probe_coordinates(predictor.model, predictor.tokenizer, photos.batches)
    table = Table(title=f"doctor coordinates: {escape(str(checkpoint))} on {probe.objects} boxes of {photos.photos} "
                        f"photos of {escape(str(source))} "
                        "(cross-validated R², 1 = known, 0 = no better than the mean)")
    table.add_column("read from")
    for name in COORDINATES:
        table.add_column(name, justify="right")
    last = len(probe.r2) - 1

    def layer_name(layer: int) -> str:
        return "input embeddings" if layer == 0 else f"layer {layer}" + (" (last)" if layer == last else "")

    for layer, row in enumerate(probe.r2):
        table.add_row(f"answer, {layer_name(layer)}", *(f"{v:.2f}" for v in row))
    table.add_row("[dim]coordinates written before it[/]", *(f"[dim]{v:.2f}[/]" for v in probe.from_written))
    table.add_row("[dim]box before it, and its place[/]", *(f"[dim]{v:.2f}[/]" for v in probe.from_previous))
    for layer, row in enumerate(probe.image_r2):
        table.add_row(f"[dim]image tokens' mean, {layer_name(layer)}[/]", *(f"[dim]{v:.2f}[/]" for v in row))
    console.print(table)
    known, said = verdict(probe)
    console.print(f"[green]{said}[/]" if known else f"[yellow]{said}[/]")
    if out:
        payload = {"checkpoint": str(checkpoint), "data": str(source), "photos": photos.photos,
                   "left_out": photos.skipped, "objects": probe.objects,
                   "coordinates": list(COORDINATES), "r2": probe.r2, "from_written": probe.from_written,
                   "from_previous": probe.from_previous, "image_r2": probe.image_r2, "known": known}
        write_text_atomic(out, json.dumps(payload, indent=2) + "\n")
        console.print(f"json: {escape(str(out))}", soft_wrap=True)


@app.command("landscape")
def landscape(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder written by `bbuvl train`."),
    dataset: Path = typer.Argument(..., help="Dataset JSONL whose loss is mapped."),
    groups: str = typer.Option("detection,adapter", help="LR groups whose parameters the directions move (comma list); "
                               "their parameters are held 3 more times in memory, so llm or vision cost as much as the model."),
    steps: int = typer.Option(11, help="Grid points per direction (at most 101: the grid costs steps² evaluations).",
                              callback=int_range(2)),
    span: float = typer.Option(1.0, help="Grid from -span to +span (1 = each filter moved by its own norm).",
                              callback=finite_range(0, lo_open=True)),
    samples: int = typer.Option(4, help="Photos the loss is averaged over.", callback=int_range(1)),
    seed: int = typer.Option(0, help="Seed of the random directions."),
    out: Path = typer.Option(Path("doctor-landscape.png"), metavar=FILE_OUT, help="PNG contour plot."),
    device: str = typer.Option(None, help="cpu, cuda ... (default: cuda when available)."),
    overwrite: bool = OVERWRITE,
) -> None:
    """Loss along two random filter-normalised directions around the checkpoint (parameters restored exactly).

    Exits with status 1 when the loss at the checkpoint itself is NaN or inf.
    """
    from bbuvl.diagnostics.landscape import MAX_STEPS, loss_landscape
    from bbuvl.diagnostics.plots import plot_landscape
    from bbuvl.diagnostics.probe import encode_rows

    from bbuvl.train.param_groups import parse_groups

    if steps > MAX_STEPS:
        fail(f"--steps {steps}: at most {MAX_STEPS} (the grid costs steps² = {steps * steps:,} loss evaluations)")
    with user_errors(ValueError):
        chosen = parse_groups(groups)  # before minutes of loading
    check_device(device)
    claim_outputs("doctor landscape", {"CHECKPOINT": checkpoint, "DATASET": dataset}, [out], overwrite=overwrite)
    _check_plot(out)
    _check_given({"DATASET": dataset})
    rows = _rows(dataset, samples)
    predictor = _predictor(checkpoint, device, "landscape")
    with user_errors(OSError, ValueError):
        photos = encode_rows(predictor, rows, predictor.cfg.inference.batch_size)
        with _progress("landscape") as progress:
            task = progress.add_task("landscape", total=steps * steps)
            land = loss_landscape(predictor.model, photos.batches, chosen, steps, span, seed,
                                  on_progress=lambda done, total: progress.update(task, completed=done))
    if not math.isfinite(land.center):  # "loss at the checkpoint nan", exit 0, and a plot of nothing before
        _refuse_diverged(checkpoint, f"the loss at the checkpoint itself is {land.center} on these photos, so there is "
                                     "no landscape around it")
    flat = [v for row in land.losses for v in row if v == v] or [float("nan")]  # NaN: a diverged grid point
    console.print(f"loss at the checkpoint {land.center:.4g}; over the grid {min(flat):.4g} .. {max(flat):.4g}, spread "
                  f"{max(flat) - min(flat):.3g} "
                  f"({land.parameters:,} parameters in {', '.join(land.groups)}; the loss of {photos.photos} photos)")
    console.print(f"plot: {escape(str(plot_landscape(land, out, f'{_name(checkpoint)} on {dataset.name}')))}", soft_wrap=True)
