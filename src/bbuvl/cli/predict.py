"""`bbuvl predict`: a checkpoint over a folder or dataset, streamed to JSONL, resumable, shardable."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import typer

from rich.markup import escape

from bbuvl.atomic import written_path
from bbuvl.cli.common import (FILE_OUT, OVERWRITE_HELP, check_device, console, fail, finite_range, hold_outputs, int_range,
                              print_first, refuse_unused, require_file, user_errors)
from bbuvl.cli.predictor import (CHECKPOINT_HELP, LABELS, LANG, TILE_REFINE, TILE_STRIDE, TILE_WHOLE, TILE_ZOOM,
                                 TILES, ZOOM_INTO, check_mode_name, checkpoint_folder_problem, describe_tiles,
                                 diverged_warning, mode_help, plain_labels, plain_model_mode, read_folder,
                                 read_through_config, tile_options, typed)
from bbuvl.cli.stops import keeps_now
from bbuvl.outputs import refuse_inputs_being_written, refuse_outputs_being_read
from bbuvl.paths import real_path

# What a stopped predict keeps (cli/stops.py). Its whole lines, which a re-run without --overwrite goes on from; but
# --overwrite starts --out over only once the model has loaded, and a stop before that leaves --out as it was: an
# earlier run's, which a re-run without --overwrite refused as another run's when that line sent it there.
GOES_ON = "the predictions it wrote are kept; run it again, without --overwrite, to go on from there"
NOT_STARTED_OVER = "--out is as it was, not yet started over; run it again with --overwrite to start it over"


def predict(
    ctx: typer.Context,
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help=CHECKPOINT_HELP),
    input: Path = typer.Option(..., "--input", "-i", help="Image folder (recursive; files that are no photo type are "
                                                               "counted by suffix and left out) or dataset JSONL."),
    out: Path = typer.Option(..., "--out", "-o", metavar=FILE_OUT, help="Predictions JSONL; one this command wrote for the same photos, "
                             "checkpoint, mode and options (each by content) is resumed, any other existing file is "
                             "refused, naming what differs (docs/resume.md)."),
    mode: str = typer.Option(None, help=mode_help()),
    batch_size: int = typer.Option(None, help="Images per forward pass, and on an accelerator a tiled photo's regions (on the "
                                    "CPU up to 64 of them; docs/tiles.md) (default: inference.batch_size).",
                                    callback=int_range(1)),
    teachers: Path = typer.Option(None, help="Teachers JSONL for --mode teachers (default: the run's data.teachers)."),
    device: str = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
    score_threshold: float = typer.Option(None, help="Drop objects scoring below this (in [0, 1]).", callback=finite_range(0, 1)),
    objectness_threshold: float = typer.Option(
        None, help="Head mode: keep queries at least this sure an object is there (default: inference.objectness_threshold).",
        callback=finite_range(0, 1),
    ),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", help="Generate and teachers modes: the answer's token "
                                       "budget (default: inference.max_new_tokens).", callback=int_range(1)),
    labels: Path = LABELS,
    lang: str = LANG,
    constrained: bool = typer.Option(
        None, "--constrained/--no-constrained",
        help="Allow only well-formed answers (generate/teachers modes) and head captions (head/name modes) with the "
             "checkpoint's labels (default: inference.constrained).",
    ),
    tiles: str = TILES,
    tile_zoom: float = TILE_ZOOM,
    tile_stride: float = TILE_STRIDE,
    tile_whole: bool = TILE_WHOLE,
    zoom_into: str = ZOOM_INTO,
    tile_refine: str = TILE_REFINE,
    verdict_review: float = typer.Option(None, "--verdict-review", help="A fault scoring at least this sends its photo to "
                                         "review, tiled or not (default: the checkpoint's verdict_thresholds.json, "
                                         "else inference.verdict_review; for photos predicted through tiles or zoom "
                                         "its verdict_thresholds_tiled.json first).", callback=finite_range(0, 1)),
    verdict_fail: float = typer.Option(None, "--verdict-fail", help="A fault scoring at least this fails its photo, tiled "
                                       "or not (default: the checkpoint's verdict_thresholds.json, else "
                                       "inference.verdict_fail; for photos predicted through tiles or zoom its "
                                       "verdict_thresholds_tiled.json first).", callback=finite_range(0, 1)),
    hierarchy: Path = typer.Option(None, "--hierarchy", help="Label hierarchy JSON saying which labels are faults (default: "
                                   "the run config's data.hierarchy, else the shipped one; docs/faults.md)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start --out over instead of resuming or refusing it "
                                   "(never an input)."),
) -> None:
    """Predict every image and append one JSON line per image as it is done.

    Killed and re-run with the same --out, it continues where it stopped. Under `torchrun --nproc-per-node N`
    each rank predicts its share and rank 0 merges one output in input order.
    """
    keeps_now(NOT_STARTED_OVER if overwrite else GOES_ON)
    logging.basicConfig(level=logging.WARNING)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from bbuvl.data.images import skipped_note
    from bbuvl.infer.batch import PredictJob, part_path, photo_names, rank_world, run_predictions
    from bbuvl.infer.output import (check_manifest_name, check_name_room, check_ours, check_output, check_plain_file,
                                    discard_output, input_root, manifest_path)
    from bbuvl.data.faults import Faults
    from bbuvl.data.named_photos import refuse_named_photos
    from bbuvl.infer.predictor import Predictor, read_teachers, region_batch
    from bbuvl.infer.verdict import (checkpoint_verdict, hierarchy_judges_none, lone_threshold_problem, run_file_missing,
                                     verdict_counts)
    from bbuvl.infer.tiles import check_containers
    from bbuvl.model.checkpoint import CheckpointError
    from bbuvl.model.identity import identify, saved_files_note
    from bbuvl.outputs import check_not_inputs

    with user_errors(ValueError):
        check_name_room(out)  # before reading it as a link: a name past the limit was a traceback there
    out = written_path(out)  # reached through a link: the file's lock, manifest and writes (docs/resume.md)
    # A FIFO given as one was read (hashed for the resume key) and waited on forever.
    for path, what, expected in ((teachers, "--teachers", "teachers JSONL file"), (labels, "--labels", "labels JSON file")):
        if path is not None:
            require_file(path, what, expected)
    with user_errors(ValueError):
        # A folder ('-o ""' is '.'), a FIFO or a device, before anything: --overwrite would delete a device.
        check_plain_file(out)
        check_not_inputs({"--input": input, "--checkpoint": checkpoint, "--teachers": teachers, "--labels": labels,
                          "--hierarchy": hierarchy},
                         [out, manifest_path(out)])
        refuse_named_photos({"--input": input, "--teachers": teachers}, [out, manifest_path(out)])
        # A checkpoint a running `bbuvl train` is saving (its run/final, a checkpoint-N its rotation deletes) loaded
        # half written, or the weights of one save and the config of the next, before anything else reads it.
        refuse_inputs_being_written({"--checkpoint": checkpoint, "--labels": labels, "--hierarchy": hierarchy})
    with user_errors(ValueError):
        rank, world = rank_world()
    if overwrite and world > 1:
        fail("--overwrite starts --out over from one process; under torchrun delete --out (and its .rank* parts) instead")
    check_mode_name(mode)
    tiled = tile_options(tiles, tile_zoom, tile_whole, zoom_into, tile_stride, tile_refine)
    labels, lang = plain_labels(checkpoint, labels, lang, typed(ctx, "lang"))
    mode = plain_model_mode(checkpoint, labels, lang, mode, lang_typed=typed(ctx, "lang"))
    with user_errors(ValueError, OSError):
        faults = Faults.load(hierarchy) if hierarchy is not None else None  # a bad file is refused before the model loads
    given = {k: v for k, v in (("score_threshold", score_threshold), ("objectness_threshold", objectness_threshold),
                               ("constrained", constrained), ("verdict_review", verdict_review),
                               ("verdict_fail", verdict_fail), ("max_new_tokens", max_new_tokens)) if v is not None}
    # A threshold given on the command line judges every photo: a tiled photo's own pair from the checkpoint would
    # otherwise judge it at a number the user did not give.
    given |= {f"{k}_tiled": v for k, v in (("verdict_review", verdict_review), ("verdict_fail", verdict_fail))
              if v is not None}
    given |= tiled
    with user_errors(ValueError, OSError, CheckpointError):
        # Refuse a foreign --out, or one another run wrote, before minutes of model loading, not after; the run
        # config alone gives the mode and the options, the checkpoint's completeness is checked by read_folder below.
        check_manifest_name(out)  # --overwrite too: it starts --out over, never a file of the user's beside it
        found = None if overwrite else check_ours(out)
        cfg = run_config(checkpoint)
        if hierarchy is None and (missing := run_file_missing(checkpoint, "data.hierarchy", cfg.data.hierarchy)):
            fail(f"{missing}; pass --hierarchy HIERARCHY.json")
        refuse_untiled(ctx, given, cfg)
        mode = mode or cfg.inference.mode
        refuse_other_modes(ctx, mode)
        # A lone threshold is paired with the other one in effect; the checkpoint is hashed here once, for the resume
        # key and the chosen files' check alike: a checkpoint copied back whole was hashed for each (seconds a 3B).
        lone = (verdict_review is None) != (verdict_fail is None)
        files = identify(checkpoint, lora_base(checkpoint, cfg), {f.name: f for f in found.key.checkpoint_files}
                         if found else None).files if lone else None
        in_effect = (checkpoint_verdict(checkpoint, mode, hierarchy, {f.name: f for f in files})[0]
                     if files is not None else None)
        if in_effect is not None and (problem := lone_threshold_problem(verdict_review, verdict_fail, in_effect)):
            fail(problem)
        # --overwrite deleted a hierarchy the run config named, when --out named it too
        through = read_through_config(checkpoint, cfg, mode, teachers)
        check_not_inputs(through, [out, manifest_path(out)])
        # A LoRA checkpoint's base model is loaded too: one a command is writing now loads half written.
        refuse_inputs_being_written({k: Path(v) for k, v in through.items() if v is not None and os.path.lexists(v)})
        # An --input JSONL another command is still writing would be predicted in part and resumed against its rest
        refuse_inputs_being_written({"--input": input, "--teachers": teachers})
        source = teachers or (Path(cfg.data.teachers) if cfg.data.teachers else None)
        if mode == "teachers" and (source is None or not Path(source).exists()):
            fail(teachers_missing(checkpoint, cfg.data.teachers))
        if mode == "teachers":
            read_teachers(source, cfg.inference.num_teachers)  # a bad or empty file is refused before the model loads
        skipped: Counter[str] = Counter()
        lines: dict[str, str] = {}
        job = PredictJob(photo_names(input, skipped, lines), out, mode, 1, source=str(real_path(input)),
                         checkpoint=str(real_path(checkpoint)), root=input_root(input), lines=lines)
        if (note := skipped_note(input, skipped)) is not None:
            console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
        job.key = predict_key(job, checkpoint, cfg, given, source if mode == "teachers" else None, labels, lang,
                              found.key if found else None, hierarchy, in_effect, files)
        # The key hashed what no record vouched for: files training saved and something changed since (a copy cut
        # short, a disk's damage) answered without a word, where `doctor model` names them; and files gone since
        if (note := saved_files_note(checkpoint, {f.name: f for f in job.key.checkpoint_files})) is not None:
            console.print(f"[yellow]warning[/]: {escape(note)}", soft_wrap=True)
    # The lock run_predictions takes, held from here: a busy --out is refused now. Another rank of a sharded run holds
    # its part alone: rank 0 holds --out for the merge, and every rank's lock on it refused all ranks but the first.
    hold_outputs("predict", [out if rank == 0 else part_path(out, rank, world)])
    with user_errors(ValueError, OSError):
        if not overwrite:
            check_output(out, job.manifest)
        else:  # it starts --out over: an `eval` or `viz` reading it now would read part of two runs
            refuse_outputs_being_read({"--out": out})
    check_device(device)
    with user_errors(ValueError, OSError, CheckpointError):
        folder = read_folder(checkpoint, labels, lang)
        if faults is not None and (problem := hierarchy_judges_none(faults, folder.prompt.labels)) is not None:
            fail(f"--hierarchy {hierarchy}: {problem}; give the hierarchy the checkpoint's labels come from, or leave "
                 "--hierarchy out")
        check_containers(given.get("zoom_containers", cfg.inference.zoom_containers), folder.prompt.labels)
        check_containers(given.get("tile_refine", cfg.inference.tile_refine) or [], folder.prompt.labels,
                         "--tile-refine / inference.tile_refine")
        # The resume key hashed the checkpoint's files already: a copied checkpoint (its recorded digests' stats
        # no longer match) was hashed again for the chosen files' check, seconds for a 3B model.
        if (diverged := diverged_warning(checkpoint)) is not None:
            console.print(f"[yellow]warning[/]: {escape(diverged)}", soft_wrap=True)
        predictor = Predictor.load(folder, device=device, known={f.name: f for f in job.key.checkpoint_files})
        check_unchanged(job, checkpoint, cfg)
    if mode == "teachers":
        with user_errors(ValueError, OSError):
            predictor.set_teachers(source)
        # Which file, in full: a checkpoint trained before runs recorded their data absolute reads its relative
        # data.teachers from the folder predict runs in (model/checkpoint.py `relative_run_files`).
        console.print(f"teachers: {escape(str(real_path(source)))}"
                      f"{'' if teachers is not None else ' (the run config data.teachers)'}", soft_wrap=True)
    with user_errors(ValueError):
        predictor.check_mode(mode)  # before any photo: a mode this checkpoint cannot run is one error, not one per photo
    if faults is not None:
        predictor.faults = faults
    with user_errors(ValueError):
        options = predictor.options(mode, **given)
    if job.inputs and (size := first_photo_size(job)) and (cost := describe_tiles(predictor, options, size)):
        console.print(escape(cost), soft_wrap=True)
    job.batch_size = batch_size or predictor.cfg.inference.batch_size
    predictor.region_batch = region_batch(predictor.device, job.batch_size)
    if overwrite:
        with user_errors(ValueError, OSError):
            discard_output(out)  # only now, with the model loaded: a failed start keeps the old file
        keeps_now(GOES_ON)  # the lines from here on are this run's
    with Progress(TextColumn(f"predict ({mode})"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[rate]}"), console=console) as progress:
        task = progress.add_task("predict", total=None, rate="")
        start = time.perf_counter()  # not at the first chunk's end: the rate would be that chunk over no time at all

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, rate=f"{done / max(time.perf_counter() - start, 1e-9):.2f} img/s")

        with user_errors(ValueError, OSError):
            stats = run_predictions(job, lambda chunk: predictor.predict_lines(chunk, mode, **options.model_dump()), on_progress,
                                    lambda note: console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True))
    console.print(f"[green]done[/]: {stats['predicted']} predicted ({stats['images_per_s']:.2f} img/s), "
                  f"{stats['skipped']} already in {escape(str(out))}, {stats['errors']} with errors")
    if stats["dropped"]:
        console.print(f"[yellow]note[/]: {stats['dropped']} lines of photos the input does not hold were dropped from "
                      f"{escape(str(out))}", soft_wrap=True)
    print_first([f"{u}; its photo was predicted again" for u in stats["unreadable"]],
                " lines kept from before that eval would not read were predicted again", prefix="[yellow]note[/]: ")
    print_first(stats["failed"], f": their lines in {out} say why (\"error\")", prefix="[yellow]error[/]: ")
    if stats["cut"]:
        from bbuvl.model.checkpoint import is_plain_model_folder

        # A plain folder (an export) has no bbuvl.yaml: its budget is its generation_config.json's
        where = ("`max_new_tokens` in the folder's generation_config.json" if is_plain_model_folder(checkpoint)
                 else "`inference.max_new_tokens` in the checkpoint's bbuvl.yaml")
        console.print(f"[yellow]warning[/]: {stats['cut']} of {stats['predicted']} answers reached the token budget "
                      f"(max_new_tokens {options.max_new_tokens}) with more to write: their lines say \"cut\": true, "
                      f"and the objects after the last written are missing. Raise {where}, or pass --max-new-tokens.",
                      soft_wrap=True)
    if rank != 0 and world > 1:
        # --out holds this rank's lines only once rank 0 has merged the parts: read before, it was 'No such file', and
        # the exit code 2 had torchrun stop every rank, rank 0 before its merge.
        from bbuvl.infer.batch import part_path
        from bbuvl.outputs import writer_at

        if (writer := writer_at(out)) is not None and writer.running:
            console.print(f"rank {rank} of {world}: its lines go into {escape(str(out))} when rank 0 merges the parts",
                          soft_wrap=True)
        else:  # rank 0 ended before this rank began (or never ran): nothing will merge this part
            console.print(f"[yellow]note[/]: rank {rank} of {world}: no rank 0 is running to merge its lines, which "
                          f"stay in {escape(str(part_path(out, rank, world)))}; run the same command in one process "
                          f"(or rank 0) to merge them into {escape(str(out))}", soft_wrap=True)
        return
    if (warning := long_paths_warning(out)) is not None:
        console.print(warning, style="yellow", markup=False, soft_wrap=True)
    if stats["missing"]:
        console.print(f"[yellow]note[/]: {escape(str(out))} holds {len(job.inputs) - stats['missing']} of the "
                      f"{len(job.inputs)} photos ({stats['missing']} in no rank's part: a rank not run yet, or "
                      "killed); run those ranks, or re-run this command in one process, to predict them", soft_wrap=True)
    with user_errors(ValueError, OSError):
        verdicts = verdict_counts(out)
    thresholds, tiled_thresholds = options.thresholds(), options.thresholds(tiled=True)
    console.print(f"verdicts: {verdicts['pass']} pass, {verdicts['review']} review, {verdicts['fail']} fail "
                  f"(review at a fault score ≥ {thresholds.review:g}, fail ≥ {thresholds.fail:g}"
                  + (f"; the {verdicts['tiled']} photos predicted through tiles or zoom: review ≥ "
                     f"{tiled_thresholds.review:g}, fail ≥ {tiled_thresholds.fail:g}"
                     if verdicts["tiled"] and tiled_thresholds != thresholds else "") + ")"
                  + (f", {verdicts['unjudged']} lines without a verdict" if verdicts["unjudged"] else ""), soft_wrap=True)
    for note in predictor.threshold_notes(mode, options.tiles):
        console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
    if (note := options.hidden_faults()) is not None:
        console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
    if stats["predicted"] and stats["unanswered"] == stats["predicted"]:
        # A batch job (a cron, CI) read exit 0 as a run that worked. Answers nothing could be read from are the
        # model's results (eval's parse failure rate), not photos predict could not take
        fail(f"every one of the {stats['predicted']} photos this run predicted failed before the model answered "
             f"(their lines in {out} say why, \"error\")", code=1)


def long_paths_warning(out: Path) -> str | None:
    """One warning naming the longest of the files predict wrote (--out and its manifest) whose path Windows would not
    open, as the data writers warn (data/names.py); None when both fit."""
    from bbuvl.data import names
    from bbuvl.infer.output import manifest_path

    # Copied there, `bbuvl eval` and every tool that does not enable long paths finds no such file
    return names.long_paths_warning([out, manifest_path(out)],
                                    "Write --out into a folder nearer the root, or give it a shorter name")


def teachers_missing(checkpoint: Path, configured: str | None) -> str:
    """Why --mode teachers has no teachers file: none given and none in the run config, or the run config's not there
    (it said '--mode teachers needs --teachers' with the run config's file named nowhere)."""
    from bbuvl.infer.verdict import run_file_missing

    if configured is None:
        return "--mode teachers needs --teachers TEACHERS.jsonl (the run config names no data.teachers)"
    return f"--mode teachers: {run_file_missing(checkpoint, 'data.teachers', configured)}; pass --teachers TEACHERS.jsonl"


def refuse_untiled(ctx: typer.Context, given: dict, cfg) -> None:  # noqa: ANN001 - a Config
    """Fail when a tile option was typed but neither --tiles nor the checkpoint's inference.tiles cuts tiles (nor
    --zoom-into zooms, for --tile-zoom): it would change nothing, where the user meant it to."""
    tiled = given.get("tiles", cfg.inference.tiles) != "off"
    zoomed = bool(given.get("zoom_containers", cfg.inference.zoom_containers))
    refuse_unused(ctx, tiled, "--tiles", "tile_stride", "tile_whole", "tile_refine")
    refuse_unused(ctx, tiled or zoomed, "--tiles or --zoom-into", "tile_zoom")


def refuse_other_modes(ctx: typer.Context, mode: str) -> None:
    """Fail when an option was typed that the mode never reads (`--max-new-tokens` in head mode, `--teachers` outside
    teachers mode): it said nothing and changed nothing, where the user meant it to."""
    from bbuvl.config import PREDICT_MODES

    spec = PREDICT_MODES[mode]
    heads = " or ".join(f"--mode {m.name}" for m in PREDICT_MODES.values() if m.needs_head)
    writes = " or ".join(f"--mode {m.name}" for m in PREDICT_MODES.values() if not m.needs_head)
    refuse_unused(ctx, spec.needs_head, heads, "objectness_threshold")
    refuse_unused(ctx, not spec.needs_head, writes, "max_new_tokens")  # head captions and names have their own budget
    refuse_unused(ctx, spec.needs_teachers, "--mode teachers", "teachers")


def run_config(checkpoint: Path):  # noqa: ANN201 - a Config
    """The config a checkpoint was trained with, or the defaults a plain model folder predicts with (no weights read)."""
    from bbuvl.config import Config
    from bbuvl.model.checkpoint import is_plain_model_folder, read_run_config

    if (problem := checkpoint_folder_problem(checkpoint)) is not None:  # else it names bbuvl.yaml in a folder not there
        raise FileNotFoundError(problem)
    return Config() if is_plain_model_folder(checkpoint) else read_run_config(checkpoint)


def predict_key(job, checkpoint: Path, cfg, given: dict, teachers: Path | None, labels: Path | None,  # noqa: ANN001
                lang: str, previous=None, hierarchy: Path | None = None,  # noqa: ANN001
                in_effect=None, files=None):  # noqa: ANN001, ANN201 - FramedThresholds, FileDigests; a ResumeKey
    """The resume key of this run (infer/resume_key.py): the photos, the checkpoint (and a LoRA base), the mode, every
    option, and the files a mode reads (teachers, a plain folder's labels and language, the hierarchy whose faults
    decide each verdict); `previous`, the key the output records, spares hashing what has not changed since.
    `in_effect`: the thresholds a lone --verdict-* option pairs with (the checkpoint's, `checkpoint_verdict`'s);
    `files`: the checkpoint's digests taken at this start, not taken again."""
    from bbuvl.data.labels import DEFAULT_HIERARCHY
    from bbuvl.infer.options import PredictOptions
    from bbuvl.data.schema import resolve_image
    from bbuvl.infer.predictor import read_teacher_lines
    from bbuvl.infer.resume_key import ResumeKey, file_key, photos_key, resume_key
    from bbuvl.infer.verdict import checkpoint_verdict
    from bbuvl.model.checkpoint import is_plain_model_folder

    try:
        resolved = PredictOptions.of(cfg.inference, **given)
    except ValueError:
        if ("verdict_review" in given) == ("verdict_fail" in given):
            raise
        # A lone threshold is paired with the checkpoint's chosen one in effect (checked by `lone_threshold_problem`),
        # not the run config's: --verdict-review 0.55 beside a chosen fail of 0.6 was refused for the config's 0.5.
        framed = in_effect or checkpoint_verdict(checkpoint, job.mode, hierarchy)[0]
        pairs = {"": framed.whole, "_tiled": framed.tiled} if framed.tiled is not None else {"": framed.whole}
        resolved = PredictOptions.of(cfg.inference.model_copy(update={
            f"verdict_{which}{suffix}": getattr(pair, which) for suffix, pair in pairs.items()
            for which in ("review", "fail")}), **given)
    options = resolved.model_dump(mode="json", exclude={"batch_rows"})  # batch_rows: batching only
    if teachers is not None:  # the teacher photos too, by content: the file names them, the photos are the examples
        options |= {"teachers": file_key(teachers), "teacher_photos": photos_key(
            (s.student.image, resolve_image(teachers, s.student.image))
            for _, s in read_teacher_lines(teachers, cfg.inference.num_teachers))}
    # Each line's verdict judges the faults this file marks: another --hierarchy would judge the rest differently.
    options |= {"hierarchy": file_key(hierarchy or cfg.data.hierarchy or DEFAULT_HIERARCHY)}
    if is_plain_model_folder(checkpoint):
        options |= {"labels": file_key(labels), "lang": lang}
    if files is not None:  # taken at this start: they vouch for the files while their stat matches
        previous = replace(previous, checkpoint_files=files) if previous else ResumeKey("", "", job.mode, {}, [], files)
    return resume_key(job.photos(), checkpoint, lora_base(checkpoint, cfg), job.mode, options, previous)


def lora_base(checkpoint: Path, cfg) -> str | None:  # noqa: ANN001 - a Config
    """The base model a LoRA checkpoint's adapters sit on (it decides the answers too), None for full weights."""
    return cfg.model.path if (checkpoint / "adapter_config.json").exists() else None


def check_unchanged(job, checkpoint: Path, cfg) -> None:  # noqa: ANN001 - a PredictJob, a Config
    """ValueError when the checkpoint's content changed while its weights loaded: the output would record the key
    of one model and hold the lines of another (cheap: files whose stat is unchanged are not hashed again)."""
    from bbuvl.infer.resume_key import differences
    from bbuvl.model.identity import identify
    from bbuvl.outputs import writer_at

    now = identify(checkpoint, lora_base(checkpoint, cfg), {f.name: f for f in job.key.checkpoint_files})
    if now.digest != job.key.checkpoint:
        changed = differences(job.key, replace(job.key, checkpoint=now.digest, checkpoint_files=now.files))
        # A choice written whole meanwhile (`eval --choose-thresholds`, `choose-tiles`) names its writer by its lock
        then = {f.name: f.sha256 for f in job.key.checkpoint_files}
        writers = {w for f in now.files
                   if then.get(f.name) != f.sha256 and (w := writer_at(checkpoint / f.name)) is not None and w.running}
        by = (", ".join(sorted(f"`bbuvl {w.command}` ({w.who})" for w in writers)) + " is writing it; wait for "
              "that to finish and re-run") if writers else "another process wrote it meanwhile; re-run"
        raise ValueError(f"{checkpoint}: {'; '.join(changed)} while it loaded ({by})")


def first_photo_size(job) -> tuple[int, int] | None:  # noqa: ANN001 - a PredictJob
    """The (EXIF-oriented) size of the job's first photo, to state what tiles cost; None when it cannot be read."""
    from bbuvl.data.images import upright_size

    name = Path(job.inputs[0])
    try:
        # the header alone: a 200 MP phone photo took 5 s to decode, and predict decodes it again
        return upright_size(name if name.is_absolute() or job.root is None else job.root / name)
    except (OSError, ValueError):
        return None  # that photo's own error line will say why
