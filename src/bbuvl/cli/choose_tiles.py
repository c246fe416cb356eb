"""`bbuvl choose-tiles`: the scale `tiles: auto` shows photos at, chosen on validation photos (infer/tile_scale.py)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from bbuvl.cli.common import (OVERWRITE_HELP, TARGET_PRECISION, TARGET_RECALL, check_device, claim_outputs, console,
                              fail, finite_range, one_of, print_first, refuse_unused, require_file, user_errors)
from bbuvl.cli.predictor import CHECKPOINT_HELP, read_folder, read_through_config
from bbuvl.infer.tile_scale import REFINE_WITHIN, WITHIN
from bbuvl.outputs import check_not_inputs, check_replaced_whole, refuse_inputs_being_written, replacing
from bbuvl.paths import real_path


def parse_factors(text: str) -> list[float]:
    """`0.5,0.75,1` -> the factors; ValueError naming the bad one."""
    out = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"--factors: '{part}' is not a number (expected e.g. 0.5,0.75,1,1.25)") from None
        if not 0 < value <= 8:
            raise ValueError(f"--factors: {value:g} is out of range (0, 8]")
        out.append(value)
    return out


def choose_tiles(
    ctx: typer.Context,
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help=CHECKPOINT_HELP),
    gt: Path = typer.Option(..., "--gt", help="Validation dataset JSONL: photos like the ones `auto` will tile (their "
                            "size and framing), with their ground truth."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the candidates' predictions (pred_scale_S.jsonl), "
                             "one file per distinct tiling: a scale that cuts every photo into the grids of a scale "
                             "nearer the training one is scored on that one's file."),
    mode: str = typer.Option("head", help="Prediction mode the candidates are scored in.",
                             callback=one_of("head", "name", "generate")),
    factors: str = typer.Option("0.5,0.75,1,1.25", help="Candidate scales, as factors of the checkpoint's training "
                                "scale."),
    metric: str = typer.Option("AP50", help="What is compared, by category over the judged categories the tiles answer "
                               "for: AP50 or AP.", callback=one_of("AP50", "AP")),
    within: float = typer.Option(WITHIN, help="A cheaper candidate is taken when its score is within this many "
                                 "standard errors (the jackknife's over the photos) of the best.",
                                 callback=finite_range(0)),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
    refine: bool = typer.Option(True, "--refine/--no-refine", help="Also choose the categories whose whole-photo boxes "
                                "the tiles refine (a long thin air baffle): each category the whole pass answers for, "
                                "kept when refining it gains more than --refine-within standard errors on these "
                                "photos (docs/tiles.md, \"Thin parts from the tiles\")."),
    refine_within: float = typer.Option(REFINE_WITHIN, help="A category is refined by the tiles when that gains more "
                                        "than this many standard errors (the jackknife's over the photos).",
                                        callback=finite_range(0)),
    choose_thresholds: bool = typer.Option(False, "--choose-thresholds", help="Also choose the verdict thresholds of "
                                           "photos cut into tiles, on the chosen scale's predictions of these photos, "
                                           "as `bbuvl eval --choose-thresholds` chooses them, and write them into the "
                                           "checkpoint (verdict_thresholds_tiled.json)."),
    target_recall: float = TARGET_RECALL,
    target_precision: float = TARGET_PRECISION,
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Predict the validation photos with `tiles: auto` at each candidate scale and write the best into the checkpoint.

    The checkpoint's `tile_scale.json` then decides `auto`'s grid in `predict`, `serve` and every bench, in place of
    the scale it trained at (docs/tiles.md, "Choosing the tile scale"). A photo its frame already shows at a candidate's
    scale gets no tiles under it: close-ups at the training photos' size are tiled only by candidates above 1.
    With --choose-thresholds the verdict's thresholds for photos cut into tiles are chosen on the chosen scale's
    predictions: a fault's score depends on the grid it was found in (docs/faults.md, "Thresholds per framing").
    """
    from bbuvl.data.faults import TILED_THRESHOLDS_FILE
    from bbuvl.data.schema import require_photos
    from bbuvl.data.scale import TILE_SCALE_FILE, TrainingScale
    from bbuvl.eval.judging import choose_tiled_verdict
    from bbuvl.eval.predictions import read_ground_truth
    from bbuvl.eval.tile_choice import choose_tile_scale, chosen_predictions, written_by_choose_tiles
    from bbuvl.infer.predictor import Predictor
    from bbuvl.infer.verdict import ChosenThresholds
    from bbuvl.train.data_files import photo_folders

    refuse_unused(ctx, choose_thresholds, "--choose-thresholds", "target_recall", "target_precision")
    refuse_unused(ctx, refine, "--refine", "refine_within")  # --no-refine chooses no category to refine by it
    require_file(gt, "--gt")  # a folder was 'no such file'
    from bbuvl.data.text import not_text

    if (problem := not_text(os.path.abspath(gt))) is not None:  # a folder named in GBK bytes: failed a scale in
        fail(f"--gt {problem}; each candidate scale's predictions name --gt's photos by their full paths, and a "
             "predictions file holds UTF-8 text only")
    with user_errors(ValueError):
        candidates = parse_factors(factors)
    check_device(device)
    with user_errors(ValueError, OSError):
        # A damaged or empty --gt is refused here, before the model loads, not after.
        require_photos(read_ground_truth(gt), gt)
        # --out is rewritten whole: never the checkpoint (nor a folder around or inside it), nor a folder holding --gt's
        # photos (set aside while it ran, every one was 'image file not found'); beside them, as in a flat dataset, is fine.
        holding = {k: f for k, f in photo_folders(gt, "--gt").items() if real_path(f).is_relative_to(real_path(out))}
        check_not_inputs({"--checkpoint": checkpoint, **holding}, folders=[out])
    # The checkpoint is read, and tile_scale.json written into it, as `bbuvl eval --choose-thresholds` writes its file.
    files = [checkpoint / TILE_SCALE_FILE, *([checkpoint / TILED_THRESHOLDS_FILE] if choose_thresholds else [])]
    # Read for the whole run, as predict reads it: registered, a `train --overwrite` is refused while it predicts, and a
    # checkpoint being written is refused here, naming its writer
    refuse_inputs_being_written({"--checkpoint": checkpoint})
    # --out is set aside whole below: --overwrite gives up its predictions, never what lies among them
    claim_outputs("choose-tiles", {"--gt": gt}, files, [out], overwrite, own={out: written_by_choose_tiles})
    with user_errors(ValueError, OSError):
        folder = read_folder(checkpoint, None, "zh")
        # --out is replaced whole: never a folder holding what the run config names (the hierarchy, a LoRA base)
        through = read_through_config(checkpoint, folder.cfg)
        check_not_inputs(through, folders=[out])
        if overwrite:  # --out is replaced whole: --overwrite deleted a folder of the user's files, or a file, with it
            check_replaced_whole(out, "choose-tiles")
        # A LoRA checkpoint's base model is loaded too: one a command is writing now loads half written.
        refuse_inputs_being_written({k: Path(v) for k, v in through.items() if v is not None and os.path.lexists(v)})
        predictor = Predictor.load(folder, device=device)
        predictor.check_mode(mode)
        trained = TrainingScale.load(checkpoint)
        # The tiled photos' pair kept from before: the scale it was chosen under, when recorded, says whether it fits.
        kept_pair = ChosenThresholds.load(checkpoint, tiled=True)
    table = Table(title=f"tiles: auto on {escape(str(gt))} ({escape(mode)} mode)")
    for column in ("scale", "grids (photos)", "passes", escape(metric), "best minus it, by chance (1 s.e.)"):
        table.add_column(column, justify="right")

    def show(c) -> None:  # noqa: ANN001 - a Candidate
        console.print(f"scale {c.scale:g}: {escape(', '.join(f'{g} ({n})' for g, n in c.grids.items()))}, {c.passes} "
                      f"passes, {metric} {'-' if c.score is None else f'{c.score:.3f}'}", soft_wrap=True)

    # Another checkpoint's candidates (other scales) or another --gt's never stay beside this run's (docs/tiles.md).
    # The checkpoint's own files are not set aside with them: a server or predict loading it meanwhile, or a run
    # killed half-way, would find it without its chosen scale; each is replaced whole at the end instead.
    with user_errors(ValueError, OSError), replacing([out]):
        chosen = choose_tile_scale(predictor, gt, out, None if trained is None else trained.median, mode, candidates,
                                   metric, on_candidate=show, within=within, refine=refine,
                                   refine_within=refine_within)
        refuse_unmeasured(chosen_predictions(out, chosen), gt)
        refuse_unscored(chosen, gt)
        refuse_uncompared(chosen, gt)
        verdict, why_not = (choose_tiled_verdict(chosen_predictions(out, chosen), gt, predictor.faults,
                                                 predictor.options(mode).framed(), target_recall, target_precision,
                                                 mode)
                            if choose_thresholds else (None, None))
        if verdict is not None:
            verdict = replace(verdict, tile_scale=chosen.scale, tile_refine=list(chosen.refine))
        path = save_choices(checkpoint, chosen, verdict)
    chosen_file = chosen_predictions(out, chosen)
    print_first([f"{failed}; it counts as a photo where nothing was found, at every scale"
                 for failed in unreadable(chosen_file)],
                f" photos that could not be predicted: their lines in {chosen_file} say why (\"error\")")
    for c in chosen.candidates:
        mark = " *" if c.scale == chosen.scale else ""
        table.add_row(f"{c.scale:g}{mark}", escape(", ".join(f"{g} ({n})" for g, n in c.grids.items())), str(c.passes),
                      "-" if c.score is None else f"{c.score:.3f}", "-" if c.spread is None else f"{c.spread:.3f}")
    console.print(table)
    for note in chosen.notes + tied(chosen):
        console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
    console.print(f"compared: {escape(chosen.metric)}; chosen: the fewest passes of those within {within:g} standard "
                  "errors of the best", soft_wrap=True)
    console.print(f"chose scale {chosen.scale:g} in {escape(mode)} mode (trained at {chosen.train_scale:g}); written to "
                  f"{escape(str(path))}", soft_wrap=True)
    for r in chosen.refine_scores:
        console.print(f"refine {escape(r.category)} by the tiles: {escape(metric)} {_num(r.without)} -> {_num(r.refined)} "
                      f"(1 s.e. {_num(r.spread)}): {'kept' if r.kept else 'not kept'} (kept above {refine_within:g} "
                      "s.e.)", soft_wrap=True)
    for note in ([why_not] if why_not else []) + (verdict.notes if verdict is not None else []):
        console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
    if verdict is not None:
        console.print(f"verdict thresholds of photos cut into tiles ({verdict.photos}, {verdict.faulty_photos} faulty): "
                      f"review {verdict.thresholds.review:g}, fail {verdict.thresholds.fail:g} (flag "
                      f"{_num(verdict.recall)} of the faulty photos, {_num(verdict.precision)} of failed photos faulty); "
                      "written to "
                      f"{escape(str(checkpoint / TILED_THRESHOLDS_FILE))}", soft_wrap=True)
    elif kept_pair is not None:
        # Said of the scale the pair records, not of the scale this run replaced: after two runs at 0.5 over a pair
        # chosen at 0.75, the second said the scale it was chosen under was unchanged.
        kept = escape(str(checkpoint / TILED_THRESHOLDS_FILE))
        before = kept_pair.tile_scale
        again = ("on validation photos that can decide them" if choose_thresholds else "(--choose-thresholds)")
        refined = kept_pair.tile_refine
        if before == chosen.scale and refined is not None and sorted(refined) != sorted(chosen.refine):
            # The same scale with another refinement: the fault scores it was chosen on are not this checkpoint's now
            console.print(f"[yellow]note[/]: {kept} is kept, chosen at this scale ({chosen.scale:g}) with the tiles "
                          f"refining {escape(', '.join(refined) or 'no category')}, where they now refine "
                          f"{escape(', '.join(chosen.refine) or 'no category')}; choose it again {again} so that it "
                          "fits the fault scores they make", soft_wrap=True)
        elif before == chosen.scale:
            console.print(f"note: {kept} is kept: it was chosen at this scale ({chosen.scale:g})", soft_wrap=True)
        elif before is None:
            console.print(f"[yellow]note[/]: {kept} is kept; the scale it was chosen at is not recorded (chosen by "
                          "`eval --choose-thresholds`, or before scales were recorded): if it was not "
                          f"{chosen.scale:g}, choose it again {again} so that it fits this scale's fault scores",
                          soft_wrap=True)
        else:
            console.print(f"[yellow]note[/]: {kept} is kept, chosen on photos cut at scale {before:g}; choose it again "
                          f"{again} so that it fits this scale's fault scores", soft_wrap=True)


def save_choices(checkpoint: Path, chosen, verdict) -> Path:  # noqa: ANN001 - a ChosenTileScale, ChosenThresholds
    """Write the tiled photos' verdict thresholds (when chosen), then the chosen scale, into the checkpoint, each
    atomically and tied by one new id (`pair`): a run killed between the two leaves a pair whose id is not the scale's,
    which every reader leaves out (infer/verdict.py `unpaired`), never a pair judging another run's scale. The pair
    before is put back when the scale cannot be written. Without a new pair, the scale takes the id of the one kept."""
    import secrets

    from bbuvl.atomic import write_bytes_atomic
    from bbuvl.data.faults import TILED_THRESHOLDS_FILE
    from bbuvl.infer.verdict import ChosenThresholds

    if verdict is None:
        try:
            kept = ChosenThresholds.load(checkpoint, tiled=True)
        except ValueError:  # damaged: every reader says so, naming it
            kept = None
        return replace(chosen, pair=None if kept is None else kept.pair).save(checkpoint)
    pair_file = checkpoint / TILED_THRESHOLDS_FILE
    before = pair_file.read_bytes() if pair_file.is_file() else None
    pair = secrets.token_hex(8)
    replace(verdict, pair=pair).save(checkpoint)
    try:
        return replace(chosen, pair=pair).save(checkpoint)
    except BaseException:
        if before is None:
            pair_file.unlink(missing_ok=True)
        else:
            write_bytes_atomic(pair_file, before)
        raise


def refuse_unmeasured(predictions: Path, gt: Path) -> None:
    """ValueError when not one validation photo could be predicted (a --gt copied without its images): every score
    would be 0 on no photo, and the scale written into the checkpoint, in place of one measured before, a guess."""
    from bbuvl.eval.predictions import read_predictions

    failed = unreadable(predictions)
    if failed and len(failed) == len(read_predictions(predictions)):
        raise ValueError(f"{gt}: none of its {len(failed)} photos could be predicted (the first: {failed[0]}), so no "
                         "scale was measured and none is written; give the photos beside it, or another --gt")


def refuse_unscored(chosen, gt: Path) -> None:  # noqa: ANN001 - a ChosenTileScale
    """ValueError when no candidate could be scored (no object of the categories compared in --gt): the scale nearest
    the training scale would be written into the checkpoint, over one measured before, as if it had been chosen."""
    if all(c.score is None for c in chosen.candidates):
        raise ValueError(f"{gt}: no candidate scale could be scored ({chosen.metric} is undefined on its "
                         f"{chosen.photos} photos: they hold no object of those categories), so none is written; "
                         "give validation photos with such objects")


def refuse_uncompared(chosen, gt: Path) -> None:  # noqa: ANN001 - a ChosenTileScale
    """ValueError when every candidate scale cut the photos alike (close-ups, each shown whole at every scale): one
    prediction was scored, nothing was compared, and the scale nearest the training scale would be written over one
    measured before on photos the tiles cut, as if these photos had chosen it. One candidate (`--factors 1`) is the
    user's own choice, and is written."""
    first = chosen.candidates[0]
    if len(chosen.candidates) < 2 or any((c.grids, c.passes) != (first.grids, first.passes) for c in chosen.candidates):
        return
    grids = ", ".join(f"{g} ({n})" for g, n in first.grids.items())
    whole = " (none of them is cut into tiles)" if set(first.grids) == {"1x1"} else ""
    raise ValueError(f"{gt}: every candidate scale ({', '.join(f'{c.scale:g}' for c in chosen.candidates)}) cuts its "
                     f"{chosen.photos} photos alike, {grids}{whole}, so these photos cannot tell the scales apart and "
                     "none is written; choose on validation photos like the ones `tiles: auto` will cut (as large, as "
                     "framed), or with --factors that cut these")


def tied(chosen) -> list[str]:  # noqa: ANN001 - a ChosenTileScale
    """A note when every candidate that cut the photos differently scored the same: the cheapest is written, but these
    photos did not prefer it (a model finding nothing at any scale scores 0 at all of them)."""
    scores = {c.score for c in chosen.candidates if c.score is not None}
    if len(scores) != 1 or len({(tuple(c.grids.items()), c.passes) for c in chosen.candidates}) < 2:
        return []
    score = scores.pop()
    found = " (no object of the categories compared was found at any scale)" if score == 0 else ""
    return [f"every candidate scored {chosen.metric.split()[0]} {score:.3f}{found}: these photos do not tell the scales "
            "apart, and the cheapest is written as a tie-break, not as measured better"]


def unreadable(predictions: Path) -> list[str]:
    """`photo: why` for each validation photo a predictions file says could not be predicted (missing, corrupt)."""
    from bbuvl.eval.predictions import read_predictions

    return [f"{line.image}: {line.error.removeprefix(line.image + ': ')}" for line in read_predictions(predictions)
            if line.error]


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"
