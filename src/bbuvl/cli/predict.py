"""`bbuvl predict`: a checkpoint over a folder or dataset, streamed to JSONL, resumable, shardable."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from rich.markup import escape

from bbuvl.cli.common import OVERWRITE_HELP, check_device, console, fail, finite_range, user_errors


def predict(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Checkpoint folder written by `bbuvl train`, or a plain "
                                    "Hugging Face model folder (the zero-shot baseline: generate mode, needs --labels)."),
    input: Path = typer.Option(..., "--input", "-i", help="Image folder (recursive) or dataset JSONL."),
    out: Path = typer.Option(..., "--out", "-o", help="Predictions JSONL; one this command wrote for the same input, checkpoint "
                             "and mode is resumed, any other existing file is refused."),
    mode: str = typer.Option(None, help="generate | head | name (head boxes named by the VLM) | teachers (default: the checkpoint's inference.mode)."),
    batch_size: int = typer.Option(None, help="Images per forward pass (default: inference.batch_size)."),
    teachers: Path = typer.Option(None, help="Teachers JSONL for --mode teachers (default: the run's data.teachers)."),
    device: str = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
    score_threshold: float = typer.Option(None, help="Drop objects scoring below this (in [0, 1]).", callback=finite_range(0, 1)),
    objectness_threshold: float = typer.Option(
        None, help="Head mode: keep queries at least this sure an object is there (default: inference.objectness_threshold).",
        callback=finite_range(0, 1),
    ),
    labels: Path = typer.Option(None, "--labels", help="A plain model folder's label vocabulary: a dataset's labels.json "
                                "or a JSON list of labels."),
    lang: str = typer.Option("zh", help="A plain model folder's prompt language: zh | en."),
    constrained: bool = typer.Option(
        None, "--constrained/--no-constrained",
        help="Generate/teachers modes: allow only well-formed answers with the checkpoint's labels (default: inference.constrained).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start --out over instead of resuming or refusing it "
                                   "(never an input)."),
) -> None:
    """Predict every image and append one JSON line per image as it is done.

    Killed and re-run with the same --out, it continues where it stopped. Under `torchrun --nproc-per-node N`
    each rank predicts its share and rank 0 merges one output in input order.
    """
    logging.basicConfig(level=logging.WARNING)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from bbuvl.data.layout import read_vocabulary
    from bbuvl.infer.batch import PredictJob, list_inputs, run_predictions
    from bbuvl.infer.output import check_output, discard_output, manifest_path
    from bbuvl.infer.predictor import MODES, Predictor
    from bbuvl.model.checkpoint import CONFIG_FILE, CheckpointError, is_plain_model_folder, read_run_config
    from bbuvl.outputs import check_not_inputs

    with user_errors(ValueError):
        check_not_inputs({"--input": input, "--checkpoint": checkpoint, "--teachers": teachers, "--labels": labels},
                         [out, manifest_path(out)])
    if overwrite and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        fail("--overwrite starts --out over from one process; under torchrun delete --out (and its .rank* parts) instead")
    if mode is not None and mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}, got '{mode}'")
    base = is_plain_model_folder(checkpoint)
    if base:
        if labels is None:
            fail(f"{escape(str(checkpoint))} is a plain model folder (no {CONFIG_FILE}): give its label vocabulary "
                 "with --labels labels.json")
        if mode not in (None, "generate"):
            fail(f"a plain model folder predicts in generate mode only (its --mode {escape(mode)} needs a trained checkpoint)")
        if lang not in ("zh", "en"):
            fail(f"--lang must be zh or en, got '{escape(lang)}'")
        mode = "generate"
    with user_errors(ValueError, OSError):
        # Refuse a foreign or busy --out before minutes of model loading, not after.
        mode = mode or read_run_config(checkpoint).inference.mode
        job = PredictJob([], out, mode, 1, source=str(input.resolve()), checkpoint=str(checkpoint.resolve()))
        if not overwrite:
            check_output(out, job.manifest)
        job.inputs = list_inputs(input)
    check_device(device)
    with user_errors(ValueError, OSError, CheckpointError):
        if base:
            predictor = Predictor.from_base_model(checkpoint, read_vocabulary(labels), lang=lang, device=device)
        else:
            predictor = Predictor.from_checkpoint(checkpoint, device=device)
    if mode == "teachers":
        source = teachers or (Path(predictor.cfg.data.teachers) if predictor.cfg.data.teachers else None)
        if source is None or not Path(source).exists():
            fail("--mode teachers needs --teachers TEACHERS.jsonl")
        with user_errors(ValueError, OSError):
            predictor.set_teachers(source)
    kw = {k: v for k, v in (("score_threshold", score_threshold), ("objectness_threshold", objectness_threshold),
                            ("constrained", constrained)) if v is not None}
    job.batch_size = batch_size or predictor.cfg.inference.batch_size
    if overwrite:
        with user_errors(ValueError, OSError):
            discard_output(out)  # only now, with the model loaded: a failed start keeps the old file
    with Progress(TextColumn(f"predict ({mode})"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[rate]}"), console=console) as progress:
        task = progress.add_task("predict", total=None, rate="")
        start = [None]

        def on_progress(done: int, total: int) -> None:
            import time

            start[0] = start[0] or time.perf_counter()
            progress.update(task, completed=done, total=total, rate=f"{done / max(time.perf_counter() - start[0], 1e-9):.2f} img/s")

        with user_errors(ValueError, OSError):
            stats = run_predictions(job, lambda chunk: predictor.predict_lines(chunk, mode, **kw), on_progress)
    console.print(f"[green]done[/]: {stats['predicted']} predicted ({stats['images_per_s']:.2f} img/s), "
                  f"{stats['skipped']} already in {escape(str(out))}, {stats['errors']} with errors")
