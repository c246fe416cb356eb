"""`bbuvl eval` (metrics, terminal table, HTML report) and `bbuvl viz` (boxes drawn on photos)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from bbuvl.atomic import write_text_atomic
from bbuvl.cli.common import (FILE_OUT, OVERWRITE_HELP, TARGET_PRECISION, TARGET_RECALL, claim_outputs, console, fail, finite_range,
                              int_range, cell, print_first, refuse_unused, require_file, user_errors)
from bbuvl.outputs import output_path, recorded_writer, replacing, same_path, strangers_in, writer_of
from bbuvl.paths import real_path

LEVEL_HELP = "Evaluate categories at this hierarchy level (1 = category, 2 = category/attribute; default: full label)."
FONT_HELP = "Font file with Chinese glyphs for labels in pictures (default: search the system; warns if none)."
VIZ_HIERARCHY_HELP = ("Label hierarchy JSON: English glosses and which labels are faults, framed (default: the hierarchy "
                      "of the checkpoint that wrote the predictions, else the shipped one).")
FAULTS_HIERARCHY_HELP = ("Label hierarchy JSON: English glosses and which labels are faults (default: the hierarchy of the "
                         "checkpoint that wrote --pred, else the shipped one).")


DETAILS_SUFFIX = ".coco.json"


def details_path(out: Path) -> Path:
    """Where the COCO details go for a METRICS.json path: METRICS.coco.json beside it."""
    return out.with_name(f"{out.stem}{DETAILS_SUFFIX}")


def evaluate(
    ctx: typer.Context,
    pred: Path = typer.Option(..., "--pred", help="Predictions JSONL written by `bbuvl predict`."),
    gt: Path = typer.Option(..., "--gt", help="Ground-truth dataset JSONL (image paths relative to it)."),
    out: Path = typer.Option(..., "--out", metavar=FILE_OUT, help="METRICS.json to write."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write REPORT_DIR/index.html with pictures."),
    level: Optional[int] = typer.Option(None, "--level", help=LEVEL_HELP, callback=int_range(1)),
    iou: float = typer.Option(0.5, "--iou", help="IoU at which a prediction matches a ground-truth box (error counts, label "
                              "accuracy, worst photos). COCO AP always uses 0.50:0.95.", callback=finite_range(0, 1, lo_open=True)),
    min_score: float = typer.Option(0.0, "--min-score", help="Ignore predictions below this score in the error counts "
                                    "(COCO AP always ranks every prediction).", callback=finite_range(0, 1)),
    worst: int = typer.Option(20, "--worst", help="How many of the worst photos the report shows.", callback=int_range(0)),
    font_path: Optional[Path] = typer.Option(None, "--font-path", help=FONT_HELP),
    hierarchy: Optional[Path] = typer.Option(None, "--hierarchy", help=FAULTS_HIERARCHY_HELP),
    verdict_review: Optional[float] = typer.Option(None, "--verdict-review", help="A fault scoring at least this sends its "
                                                   "photo to review, tiled or not (default: the checkpoint's threshold, else "
                                                   "the config's).",
                                                   callback=finite_range(0, 1)),
    verdict_fail: Optional[float] = typer.Option(None, "--verdict-fail", help="A fault scoring at least this fails its photo, "
                                                 "tiled or not (default: the checkpoint's threshold, else the config's).",
                                                 callback=finite_range(0, 1)),
    choose_thresholds: bool = typer.Option(False, "--choose-thresholds", help="Choose the verdict thresholds on these "
                                           "(validation) photos for --target-recall and --target-precision, and write "
                                           "them into the checkpoint that wrote --pred, one `bbuvl train` wrote (verdict_thresholds.json; "
                                           "verdict_thresholds_tiled.json from the photos predicted through tiles "
                                           "or zoom)."),
    target_recall: float = TARGET_RECALL,
    target_precision: float = TARGET_PRECISION,
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="A METRICS.json to compare with side by side (e.g. "
                                            "the base model's zero-shot evaluation), in the terminal and the report."),
    baseline_other_gt: bool = typer.Option(False, "--baseline-other-gt", help="Compare with a --baseline scored on other "
                                           "ground truth (another file, or --gt changed since): refused without it, "
                                           "since its numbers count other photos or objects."),
    frame: Optional[Path] = typer.Option(None, "--frame", help="A checkpoint whose frame sizes objects in vision tokens for "
                                         "AP and recall by size (default: the checkpoint that wrote --pred, when it is still there)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Score predictions against ground truth: COCO AP, label accuracy, error counts; optionally an HTML report.

    METRICS.json has exactly these keys: AP, AP50, AP75 (COCO, categories at --level), AP_agnostic
    (COCO AP with every label one class), AP50_agnostic, per_category (label -> AP, AP50, AP75, APs, APm, APl, AR100,
    gt, pred), label_accuracy (matched boxes right at level_1..level_N and in full), parse_failure_rate
    (lines with an error or an unreadable answer), duplicate_rate (predictions repeating a higher-scored
    same-label box at IoU > 0.9), errors (missed, extra, mislocated, mislabelled, matched and totals; answers the
    token budget cut) and prior
    (the best constant box: the one relative box that, predicted on every photo, scores the highest AP50;
    its AP50 per category and class-agnostic are what a model that ignores the photo would get).
    The other COCO numbers (APs/APm/APl, AR1/AR10/AR100 and their class-agnostic twins), the
    precision-recall curves and AP50 and recall by object size in vision tokens at the checkpoint's frame
    (`size_tokens`, with --frame or the predictions' checkpoint) go to METRICS.coco.json beside it.
    faults (docs/faults.md): fault recall, precision, AP and PR curve at the object level, the photo verdict's
    precision, recall, accuracy and ROC AUC, the confusion of state given kind, each beside "always pass" and
    "always fail". settings: what the numbers depend on (level, iou, min_score, gt and hierarchy with their
    sha256; predictions: what made them, as their manifest says: file, checkpoint, model (its identity by content),
    mode, tiles); --baseline refuses a METRICS.json whose settings differ, naming both values, other ground truth
    unless --baseline-other-gt, and names another model, mode or tiles in a note, one line each (docs/eval.md).
    """
    from bbuvl.eval.compare import (PREDICTIONS_KEY, SETTINGS_KEY, against_baseline, compare, not_comparable,
                                    predictions_record, read_metrics, run_settings, unknown_settings)
    from bbuvl.eval.fonts import find_cjk_font
    from bbuvl.eval.in_progress import edited_predictions_note, unfinished_predictions_note
    from bbuvl.outputs import refuse_inputs_being_written
    from bbuvl.eval.judging import choose_verdict, verdict_setup
    from bbuvl.infer.output import rank_parts
    from bbuvl.infer.verdict import replaced_mode, thresholds_file, typed_thresholds_problem
    from bbuvl.eval.metrics import evaluate_predictions
    from bbuvl.eval.predictions import read_ground_truth, read_predictions
    from bbuvl.eval.report import FAULT_CURVE_FILE, FAULTS_DIR, PR_CURVE_FILE, WORST_DIR
    from bbuvl.eval.size_buckets import size_metrics

    refuse_unused(ctx, report is not None, "--report", "worst", "font_path")
    refuse_unused(ctx, choose_thresholds, "--choose-thresholds", "target_recall", "target_precision")
    refuse_unused(ctx, baseline is not None, "--baseline", "baseline_other_gt")
    if choose_thresholds and (given := [f for f, v in (("--verdict-review", verdict_review),
                                                      ("--verdict-fail", verdict_fail)) if v is not None]):
        # the chosen pair replaced them without a word: METRICS.json and the checkpoint held the chosen ones
        fail(f"{' and '.join(given)} set{'s' if len(given) == 1 else ''} the thresholds to judge with, and "
             "--choose-thresholds chooses them: give one or the other")
    if (problem := typed_thresholds_problem(verdict_review, verdict_fail)) is not None:
        fail(problem)
    parts = rank_parts(pred)
    if parts and not pred.exists():  # it was 'no such file (--pred)' with the parts right there
        fail(f"{pred}: not written yet: the part files of a sharded `bbuvl predict` are beside it "
             f"({', '.join(p.name for p in parts)}), merged into it when rank 0 ends; run rank 0, or re-run the predict "
             "command in one process, to merge them")
    for path, what in ((pred, "--pred"), (gt, "--gt")):
        require_file(path, what)  # a folder was 'no such file'
    if not out.name or out.is_dir():  # `--out .` failed on a ValueError traceback where its details' name was made
        fail(f"{out}: is a folder, expected a file name to write (--out)")
    if out.name.endswith(DETAILS_SUFFIX):
        # Another evaluation's details file by that name was replaced by a METRICS.json (the same command wrote it),
        # and its own details went to X.coco.coco.json: the pair METRICS.json / METRICS.coco.json no longer matched.
        fail(f"--out {out}: a name ending in {DETAILS_SUFFIX} is where eval writes the COCO details of "
             f"{out.name[:-len(DETAILS_SUFFIX)]}.json; give the METRICS.json another name")
    # a pipe given as either was waited on forever, a folder was Python's '[Errno 21] Is a directory'
    for path, what, expected in ((hierarchy, "--hierarchy", "hierarchy JSON file"), (baseline, "--baseline", "METRICS.json")):
        if path is not None:
            require_file(path, what, expected)
    with user_errors(ValueError):
        # The checkpoint that wrote --pred is read too (its thresholds, hierarchy and frame; --choose-thresholds writes
        # into it): a run still training may replace it meanwhile.
        refuse_inputs_being_written({"--pred": pred, "--gt": gt, "--baseline": baseline, "--hierarchy": hierarchy,
                                     "--frame": frame, "--pred's checkpoint": predicted_by(pred)})
    reported = (([report / "index.html", report / PR_CURVE_FILE, report / FAULT_CURVE_FILE], [report / WORST_DIR, report / FAULTS_DIR])
                if report else ([], []))
    for written in (out, details_path(out)):  # said as "R/index.html and R/index.html: one command would write both"
        if any(same_path(written, path) or real_path(written).is_relative_to(real_path(path)) for path in reported[1]) \
                or any(same_path(written, path) for path in [*reported[0], *([report] if report else [])]):
            fail(f"{written}: one of the report's own files, or inside a folder the report replaces (--report {report}); "
                 "give --out a name outside them")
    with user_errors(ValueError, OSError):
        judged = verdict_setup(pred, hierarchy, verdict_review, verdict_fail, choose_thresholds)
        lines = read_predictions(pred)
        check_not_read_through(pred, gt, judged.checkpoint, [out, details_path(out), *reported[0]], reported[1])
    # A pair for each framing the predictions hold: photos predicted in one pass, and through tiles or zoom.
    chosen_file = ([Path(judged.checkpoint) / thresholds_file(t) for t in sorted({line.tiled for line in lines})]
                   if choose_thresholds else [])
    inputs = {"--pred": pred, "--gt": gt, "--baseline": baseline, "--hierarchy": hierarchy, "--font-path": font_path,
              "--frame": frame}
    in_report = [f for f in (out, details_path(out)) if report and real_path(f).is_relative_to(real_path(report))]
    claim_outputs("eval", inputs, [f for f in (out, details_path(out)) if f not in in_report] + chosen_file,
                  overwrite=overwrite, named_after={details_path(out): out})
    if report and os.path.lexists(report) and not report.is_dir():  # --overwrite would not make it a folder
        from bbuvl.data.input_paths import file_kind

        fail(f"{report}: {file_kind(report) or 'a file'}, not a folder: eval writes its report into a folder "
             "(--report); choose another")
    if report:
        # The report folder is eval's whole, as viz's is (docs/outputs.md): absent, empty or an earlier report of its
        # own; `--report ~` put index.html, the curves, worst/ and faults/ among the user's files. --out may lie in it.
        if not overwrite and (strangers := not_the_reports(report)):
            # The claim said 'written by someone else' of the folder: a note put into a report named nothing to move
            fail(f"{report}: holds {strangers}, which `bbuvl eval` did not write; it writes its report into a folder of "
                 "its own (--report): move them out, choose another --report, or pass --overwrite to write the report "
                 "among them")
        claim_outputs("eval", inputs, folders=[report], overwrite=overwrite or earlier_report(report))
        if overwrite:  # its picture folders are swapped in whole: a file of the user's in one went with it
            with user_errors(ValueError):
                refuse_strangers_in_pictures(report)
    with user_errors(ValueError, OSError):
        base_metrics = read_metrics(baseline) if baseline is not None else None
        records = read_ground_truth(gt)
        h = judged.faults.hierarchy
        font = find_cjk_font(font_path) if report else None
        settings = run_settings(gt, h, level, iou, min_score)
        predictions = predictions_record(pred)
    if base_metrics is not None and (why := not_comparable(settings, base_metrics, baseline_other_gt)):
        fail(f"{baseline}: not comparable with this evaluation (--baseline): {why}")
    with user_errors(ValueError, OSError):
        contract, frame_note = frame_contract(frame, pred, judged.changed)
    with console.status("computing metrics", spinner="dots"), user_errors(ValueError):
        evaluation = evaluate_predictions(records, gt, lines, pred, level=level, iou=iou, min_score=min_score,
                                          faults=judged.faults, thresholds=judged.thresholds)
        chosen = choose_verdict(evaluation, judged, gt, target_recall, target_precision) if choose_thresholds else []
        sizes = None
        if contract is not None:
            paired = [(r.record, r.prediction.objects if r.prediction else []) for r in evaluation.images]
            sizes = size_metrics([rec for rec, _ in paired], [objs for _, objs in paired], contract, level)
    evaluation.notes.extend(judged.notes)
    if frame_note:
        evaluation.notes.append(frame_note)
    if unfinished := unfinished_predictions_note(pred):
        evaluation.notes.insert(0, unfinished)
    if edited := edited_predictions_note(pred):
        evaluation.notes.insert(0, edited)
    if parts:
        evaluation.notes.insert(0, f"{pred} has part files of a sharded `bbuvl predict` beside it, not merged into it "
                                   f"({', '.join(p.name for p in parts)}): their photos' lines are not scored; re-run "
                                   "the predict command in one process to merge them")
    if base_metrics is not None and (unknown := unknown_settings(base_metrics, baseline)):
        evaluation.notes.append(unknown)
    if base_metrics is not None:
        evaluation.notes.extend(against_baseline(evaluation.metrics, settings, predictions, base_metrics, baseline))
    evaluation.notes.extend(undefined_ap_notes(evaluation.metrics, gt))

    details = {**evaluation.details(), "size_tokens": sizes.to_dict() if sizes else None}
    from bbuvl.data.jsonfile import dumps_json

    # The settings name the files given, which a folder named in bytes that are not UTF-8 (GBK) makes no text: kept
    # as JSON escapes (`dumps_json`), as every record of a run keeps them; any other write error is one line too.
    with user_errors():
        # Two files, set aside together first: a run killed between their writes left its metrics beside an earlier
        # run's details, of other predictions; now beside none (outputs.py `replacing`), which a re-run redoes.
        with replacing([out, details_path(out)]):
            write_text_atomic(out, dumps_json({**evaluation.metrics,
                                               SETTINGS_KEY: {**settings, PREDICTIONS_KEY: predictions}}, indent=2) + "\n")
            write_text_atomic(details_path(out), dumps_json(details, indent=2) + "\n")
        replaced = [note for c in chosen if (note := replaced_mode(judged.checkpoint, c)) is not None]
        written = [c.save(judged.checkpoint) for c in chosen]
    print_metrics(evaluation, h)
    print_faults(evaluation.faults, judged.source)
    for c, path in zip(chosen, written):
        which = "photos predicted through tiles or zoom" if c.tiled else "photos predicted in one pass"
        console.print(f"[green]verdict thresholds[/] ({which}, {c.photos}): review {c.thresholds.review:g}, fail "
                      f"{c.thresholds.fail:g} (flag {_num(c.recall)} of the faulty photos, {_num(c.precision)} of failed "
                      f"photos faulty) written to {escape(str(path))}; measured on the photos they were chosen on",
                      soft_wrap=True)
    for note in replaced:
        console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
    if sizes is not None:
        print_sizes(sizes)
    comparison = compare(evaluation.metrics, base_metrics) if base_metrics is not None else None
    if comparison is not None:
        print_comparison(comparison, baseline)
    for note in evaluation.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    console.print(f"[green]metrics[/]: {escape(str(out))}  (COCO details and curves: {escape(str(details_path(out)))})",
                  soft_wrap=True)
    if report and font is not None:
        from bbuvl.eval.report import write_report

        if font.warning:
            console.print(f"[bold yellow]warning:[/] {escape(font.warning)}", soft_wrap=True)
        unreadable: list[str] = []
        with console.status("drawing the report", spinner="dots"), user_errors():
            index = write_report(evaluation, report, font, h, worst=worst, comparison=comparison,
                                 baseline_name=str(baseline) if baseline else None, sizes=sizes, unreadable=unreadable,
                                 also_written=in_report)
        print_first([f"{p} (drawn as a grey placeholder in the report)" for p in unreadable],
                    " photos drawn as grey placeholders")
        console.print(f"[green]report[/]: {escape(str(index))}", soft_wrap=True)


def predicted_by(pred: Path) -> Path | None:
    """The checkpoint that wrote `pred`, as its manifest names it; None without a readable manifest (eval names a
    damaged one where it reads it)."""
    from bbuvl.eval.predictions import predictions_manifest

    try:
        manifest = predictions_manifest(pred)
    except (OSError, ValueError):
        return None
    return Path(manifest.checkpoint) if manifest is not None and manifest.checkpoint else None


def earlier_report(report: Path) -> bool:
    """Whether `report` is a folder holding an earlier report of eval's and nothing else: each thing in it written by
    `bbuvl eval` as it is now, recorded with the folder or in the folder's own ledger (the report's, which moves with
    it, eval/report.py)."""
    entries = _report_entries(report)
    return bool(entries) and all(writer_of(p) == "eval" for p in entries)


def not_the_reports(report: Path) -> str:
    """What in the folder `report` no run of `bbuvl eval` wrote as it is now, named relative to it (the first three
    and how many more); '' when there is none, when a killed eval's lock file says the folder is that run's half
    (its claim takes it as its own), or when another command is writing it now (its claim refuses, naming that
    command and its pid: its temporaries were named as strangers' files, and --overwrite offered)."""
    from bbuvl.data.text import spell_controls
    from bbuvl.outputs import writer_at

    if (writer := writer_at(report)) is not None and (writer.running or writer.command == "eval"):
        return ""
    strangers = sorted(spell_controls(p.name) + ("/" if p.is_dir() and not p.is_symlink() else "")
                       for p in _report_entries(report) if writer_of(p) != "eval")
    return ", ".join(strangers[:3]) + (f" and {len(strangers) - 3} more" if len(strangers) > 3 else "")


def refuse_strangers_in_pictures(report: Path) -> None:
    """OutputConflict naming what in the report's picture folders (worst/, faults/), which it replaces whole, is not
    a picture it draws there: --overwrite gives up the folder around them, never what lies among its pictures."""
    from bbuvl.eval.report import FAULTS_DIR, WORST_DIR, drawn_by_report
    from bbuvl.outputs import check_replaced_whole, refuse_strangers

    for pictures in (report / WORST_DIR, report / FAULTS_DIR):
        check_replaced_whole(pictures, "eval")  # a folder of the user's, or a file, by that name
        refuse_strangers(pictures, "eval", drawn_by_report)


def _report_entries(report: Path) -> list[Path]:
    """The things in a report folder but the ledger and lock files; none when it is no folder (or a link to one)."""
    from bbuvl.outputs import LEDGER, LOCK_SUFFIX

    if not report.is_dir() or report.is_symlink():
        return []
    return [p for p in report.iterdir() if p.name != LEDGER and not p.name.endswith(LOCK_SUFFIX)]


def holds_photos_drawn(folder: Path, input: Path, pred: Path | None) -> bool:
    """Whether `folder` is, or holds, a folder of the photos `input` (a dataset or predictions JSONL) or `pred` names:
    viz may draw beside them (--overwrite), never replace the folder whole nor remove a photo from it as a picture."""
    from bbuvl.eval.predictions import predictions_root, read_predictions
    from bbuvl.eval.viz import is_prediction_file
    from bbuvl.train.data_files import photo_folders

    where = real_path(folder)
    for named in (p for p in (input, pred) if p is not None):
        try:
            if is_prediction_file(named):
                root = predictions_root(named)
                folders = {(root / line.image).parent for line in read_predictions(named)}
            else:
                folders = set(photo_folders(named, "INPUT").values())
        except (OSError, ValueError):  # unread here: drawing names what is wrong with it
            continue
        if any(real_path(f) == where or real_path(f).is_relative_to(where) for f in folders):
            return True
    return False


def check_not_read_through(pred: Path, gt: Path, checkpoint: str | None, files: list[Path], folders: list[Path]) -> None:
    """OutputConflict when an output lands on what eval reads through --pred and --gt without their naming it: the
    predictions' manifest, the checkpoint that wrote them, a folder replaced whole that holds --gt's photos."""
    from bbuvl.data.named_photos import refuse_named_photos
    from bbuvl.infer.output import manifest_path
    from bbuvl.outputs import check_not_inputs
    from bbuvl.train.data_files import photo_folders

    # A file written into the checkpoint changes its content, so predict no longer resumes an output it started
    # (docs/resume.md); --overwrite replaced its files. The thresholds --choose-thresholds writes there are not here.
    read = {"--pred's manifest": manifest_path(pred)}
    if checkpoint is not None:
        read["--pred's checkpoint"] = Path(checkpoint)
    check_not_inputs(read, files, folders)
    refuse_named_photos({"--gt": gt, "--pred": pred}, files)  # a report's pr_curve.png among the photos was one
    # A report's worst/ and faults/ are replaced whole: with --overwrite, the photos in one were deleted. Beside
    # them, as in a flat dataset, is fine (what choose-tiles allows too).
    if folders:
        real = [real_path(f) for f in folders]
        holding = {what: folder for what, folder in photo_folders(gt, "--gt").items()
                   if any(real_path(folder).is_relative_to(f) for f in real)}
        check_not_inputs(holding, folders=folders)


def undefined_ap_notes(metrics: dict[str, Any], gt: Path) -> list[str]:
    """Why an AP shows as "–": no ground-truth object at all, or categories only predicted."""
    if not metrics["errors"]["gt_objects"]:
        return [f"AP is undefined (–): the ground truth {gt} holds no object, so there is nothing to find and every "
                "prediction counts as extra"]
    only_predicted = sum(1 for v in metrics["per_category"].values() if not v["gt"])
    if only_predicted:
        one = only_predicted == 1
        return [f"{only_predicted} categor{'y' if one else 'ies'} only predicted, with no object in the ground truth, "
                f"ha{'s' if one else 've'} no AP (–); AP averages the others"]
    return []


def frame_contract(frame: Path | None, pred: Path, changed: str | None = None) -> tuple[Any, str | None]:
    """The coordinate contract that sizes objects in tokens, and a note when there is none to use; `changed`: the
    files of the predictions' checkpoint that changed since they were made, whose frame is then not theirs."""
    from bbuvl.data.coords import CONTRACT_FILE, CoordinateContract
    from bbuvl.eval.predictions import predictions_manifest

    if frame is not None:
        folder = frame.parent if frame.name == CONTRACT_FILE else frame
        if not (folder / CONTRACT_FILE).is_file():
            raise ValueError(f"{frame}: no {CONTRACT_FILE} here (--frame takes a checkpoint saved by bbuvl train)")
        return CoordinateContract.load(folder), None
    manifest = predictions_manifest(pred)
    if changed is not None:
        return None, (f"no AP or recall by size in vision tokens: {manifest.checkpoint if manifest else 'the checkpoint'}"
                      f" changed since it made the predictions (its {changed}), so its frame may be another model's "
                      "(give --frame CHECKPOINT)")
    if manifest is not None and manifest.checkpoint and (Path(manifest.checkpoint) / CONTRACT_FILE).is_file():
        return CoordinateContract.load(manifest.checkpoint), None
    if manifest is not None and manifest.checkpoint and Path(manifest.checkpoint).is_dir():
        # A plain model folder (the zero-shot baseline, an export) is at hand but saved no frame of bbu-vl's.
        return None, (f"no AP or recall by size in vision tokens: {manifest.checkpoint}, which wrote the predictions, "
                      f"holds no {CONTRACT_FILE} (a plain model folder); give --frame with a checkpoint of the same "
                      "frame, saved by bbuvl train")
    return None, ("no AP or recall by size in vision tokens: the checkpoint that wrote the predictions is not at hand "
                  "(give --frame CHECKPOINT)")


def print_sizes(sizes: Any) -> None:
    """AP50 and recall by object size in vision tokens at the frame."""
    table = Table(title="By size in vision tokens at the frame (IoU 0.5)", title_justify="left")
    for col in ("size", "objects", "AP50", "AP50 class-agnostic", "recall"):
        table.add_column(col, justify="left" if col == "size" else "right")
    for name, b in sizes.buckets.items():
        table.add_row(name, str(b["objects"]), _num(b["AP50"]), _num(b["AP50_agnostic"]), _num(b["recall"]))
    console.print(table)


def _num(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def print_comparison(rows: list[dict[str, Any]], baseline: Path) -> None:
    """This evaluation beside the baseline's, with the change (green better, red worse)."""
    table = Table(title=f"Against the baseline {escape(str(baseline))}", title_justify="left")
    for col in ("", "baseline", "this", "change"):
        table.add_column(col, justify="left" if not col else "right")
    for r in rows:
        colour = {True: "green", False: "red"}.get(r["better"], "")
        change = "" if r["delta"] is None else f"{r['delta']:+.3f}" if abs(r["delta"]) < 10 else f"{r['delta']:+.0f}"
        table.add_row(r["name"], _num(r["baseline"]), _num(r["value"]), f"[{colour}]{change}[/]" if colour else change)
    console.print(table)


def print_faults(faults: Any, source: str) -> None:
    """Fault recall, precision and AP, the photo verdict and the state given kind, each beside always pass / fail."""
    o, p = faults.objects, faults.photos
    if not faults.labels:
        console.print("[yellow]faults:[/] the hierarchy marks no fault, so every photo passes (docs/faults.md)")
        return
    table = Table(title=f"Faults: {o.gt} in the ground truth, {o.predicted} predicted (found = same kind and state at "
                        f"IoU ≥ {o.iou})", title_justify="left")
    at_fail, at_review = faults.at_thresholds()
    columns = ((at_fail, o.at_fail), (at_review, o.at_review),
               ("always pass", o.always_pass), ("always fail", o.always_fail))
    table.add_column("")
    for name, _ in columns:
        table.add_column(name, justify="right")
    for key, name in (("recall", "recall"), ("precision", "precision"), ("AP", "AP (every score)"), ("found", "found"),
                      ("flagged", "predicted faults counted")):
        table.add_row(name, *(_num(getattr(row, key)) for _, row in columns))
    console.print(table)
    levels = ", ".join(f"{_num(o.recall_at_precision(level))} at precision ≥ {level:g}" for level in (0.5, 0.6, 0.8))
    console.print(f"best fault recall over every threshold: {levels}; \"always fail\" calls every part of a judged kind "
                  "faulty on its true box", soft_wrap=True)

    verdict = Table(title=f"Photo verdict: {p.faulty} of {p.photos} photos faulty; {faults.judged()}",
                    title_justify="left")
    verdict.add_column("")
    for name in ("model", "always pass", "always fail"):
        verdict.add_column(name, justify="right")
    rows = (p.model, p.always_pass, p.always_fail)
    for which, meaning in (("flagged", "review or fail"), ("failed", "fail")):
        for k in ("precision", "recall", "accuracy"):
            verdict.add_row(f"{k} ({meaning})", *(_num(getattr(getattr(r, which), k)) for r in rows))
    verdict.add_row("ROC AUC of the photo's fault score", *(_num(r.roc_auc) for r in rows))
    console.print(verdict)
    console.print(f"thresholds: {escape(source)}; verdicts: "
                  + ", ".join(f"{v} {c['faulty']} faulty / {c['clean']} clean" for v, c in p.verdicts.items()), soft_wrap=True)

    states = Table(title="State given kind (parts found as their kind at IoU ≥ 0.5)", title_justify="left")
    for col in ("kind", "found", "state accuracy", "always pass", "always fail", "missed", "true → predicted"):
        states.add_column(col, justify="left" if col in ("kind", "true → predicted") else "right", overflow="fold")
    for c in faults.states:
        if not sum(map(sum, c.counts)) + sum(c.missed):
            continue  # no part of this kind in the ground truth
        moves = ", ".join(f"{c.states[i]}→{c.states[j]} {n}" for i, row in enumerate(c.counts) for j, n in enumerate(row)
                          if n and i != j)
        states.add_row(cell(c.kind), str(sum(map(sum, c.counts))), _num(c.accuracy), _num(c.always_pass),
                       _num(c.always_fail), str(sum(c.missed)), cell(moves))
    console.print(states)


def print_metrics(evaluation: Any, hierarchy: Any, max_categories: int = 30) -> None:
    """The headline numbers and the per-category table, in the terminal."""
    m, coco, agn = evaluation.metrics, evaluation.coco.summary, evaluation.coco.agnostic
    s = evaluation.settings
    head = Table(title=f"COCO (categories at {'level ' + str(s['level']) if s['level'] else 'full label'})",
                 title_justify="left")
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")
    head.add_column("")
    for k in keys:
        head.add_column(k, justify="right")
    head.add_row("per category", *(_num(coco[k]) for k in keys))
    head.add_row("class-agnostic", *(_num(agn[k]) for k in keys))
    if m.get("prior"):
        p = m["prior"]
        row = {"AP50": f"{_num(p['AP50'])} / {_num(p['AP50_agnostic'])}"}
        head.add_row("best constant box (per category / agnostic)", *(row.get(k, "") for k in keys))
    console.print(head)

    e = m["errors"]
    summary = Table(title=f"Matching at IoU ≥ {s['iou']}", title_justify="left", show_header=False)
    summary.add_column("")
    summary.add_column("", justify="right")
    for k, v in m["label_accuracy"].items():
        summary.add_row(f"label accuracy {k.replace('_', ' ')}", _num(v))
    for k in ("matched", "missed", "extra", "mislocated", "mislabelled", "gt_objects", "predicted_objects"):
        summary.add_row(k.replace("_", " "), _num(e[k]))
    summary.add_row("parse failure rate", _num(m["parse_failure_rate"]))
    summary.add_row("duplicate rate", _num(m["duplicate_rate"]))
    if m["errors"].get("cut_answers"):
        summary.add_row("answers cut by the token budget", str(m["errors"]["cut_answers"]))
    console.print(summary)

    cats = sorted(m["per_category"].items(), key=lambda kv: (-kv[1]["gt"], kv[0]))
    table = Table(title="Per category" + (f" (first {max_categories} of {len(cats)})" if len(cats) > max_categories else ""),
                  title_justify="left")
    gloss = console.width >= 120  # the English column only where it fits beside the numbers
    table.add_column("category", overflow="fold")
    if gloss:
        table.add_column("English", overflow="fold", style="dim")
    for k in ("gt", "pred", "AP", "AP50", "AP75"):
        table.add_column(k, justify="right")
    for name, v in cats[:max_categories]:
        english = [hierarchy.english(name)] if gloss else []
        table.add_row(cell(name), *map(cell, english), *(_num(v.get(k)) for k in ("gt", "pred", "AP", "AP50", "AP75")))
    console.print(table)


def viz(
    ctx: typer.Context,
    input: Path = typer.Argument(..., help="A dataset JSONL (draws its ground truth) or a predictions JSONL."),
    out_dir: Path = typer.Argument(..., help="Folder for the PNGs."),
    pred: Optional[Path] = typer.Option(None, "--pred", help="Predictions JSONL to draw beside the ground truth."),
    limit: int = typer.Option(50, "--limit", help="Draw at most this many photos.", callback=int_range(1)),
    iou: float = typer.Option(0.5, "--iou", help="IoU for colouring predictions as right or wrong.",
                             callback=finite_range(0, 1, lo_open=True)),
    font_path: Optional[Path] = typer.Option(None, "--font-path", help=FONT_HELP),
    hierarchy: Optional[Path] = typer.Option(None, "--hierarchy", help=VIZ_HIERARCHY_HELP),
    verdict_review: Optional[float] = typer.Option(None, "--verdict-review", help="Frame a predicted fault scoring at "
                                                   "least this (default: the threshold of the checkpoint that wrote "
                                                   "the predictions, else the config's).", callback=finite_range(0, 1)),
    verdict_fail: Optional[float] = typer.Option(None, "--verdict-fail", help="The fail threshold paired with it, as "
                                                 "`bbuvl eval` takes it.", callback=finite_range(0, 1)),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Draw boxes and labels on photos into PNGs: ground truth, predictions, or both side by side; faults framed in
    magenta, as in `bbuvl eval --report` (docs/faults.md, "Where the faults show")."""
    from bbuvl.data.input_paths import file_kind
    from bbuvl.data.labels import Hierarchy
    from bbuvl.eval.draw import LabelNamer
    from bbuvl.eval.fonts import find_cjk_font
    from bbuvl.eval.in_progress import edited_predictions_note, unfinished_predictions_note
    from bbuvl.eval.viz import draw_pictures, is_prediction_file, viz_pictures
    from bbuvl.infer.verdict import typed_thresholds_problem

    refuse_unused(ctx, pred is not None, "--pred", "iou")  # only the predictions beside ground truth are judged
    for path, what, expected in ((input, "give a dataset or predictions JSONL", "JSONL file"), (pred, "--pred", "JSONL file"),
                                 (hierarchy, "--hierarchy", "hierarchy JSON file")):
        if path is not None:
            require_file(path, what, expected)
    given = [f for f, v in (("--verdict-review", verdict_review), ("--verdict-fail", verdict_fail)) if v is not None]
    with user_errors(ValueError, OSError):
        predictions = pred is not None or is_prediction_file(input)
    if given and not predictions:
        fail(f"{' and '.join(given)} judge{'s' if len(given) == 1 else ''} predictions, and {input} is a dataset drawn "
             "without --pred: give predictions, or leave them out")
    if (problem := typed_thresholds_problem(verdict_review, verdict_fail)) is not None:
        fail(problem)
    if os.path.lexists(out_dir) and not out_dir.is_dir():  # --overwrite would not make it a folder
        fail(f"{out_dir}: {file_kind(out_dir) or 'a file'}, not a folder: viz draws its pictures into a folder; "
             "choose another")
    claim_outputs("viz", {"INPUT": input, "--pred": pred, "--font-path": font_path, "--hierarchy": hierarchy},
                  folders=[out_dir], overwrite=overwrite)  # an input another command is still writing is refused too
    # Its own earlier pictures are replaced whole; a folder holding anything else (given up with --overwrite) keeps it,
    # and only its pictures are replaced. That folder, recorded as viz's after such a run, still holds the user's files:
    # replaced whole on the next run, they went with it, and so did the photos of a dataset's images/ drawn into.
    beside_photos = holds_photos_drawn(out_dir, input, pred)
    # Its pictures are those its folder's own ledger records (viz_pictures): a user's 0003_x.png there is no picture
    own = (writer_of(out_dir) == "viz" and not strangers_in(output_path(out_dir), viz_pictures(out_dir))
           and not beside_photos)
    with user_errors(ValueError, OSError):
        font = find_cjk_font(font_path)
        name = LabelNamer(font, Hierarchy.load(hierarchy))
    if font.warning:
        console.print(f"[bold yellow]warning:[/] {escape(font.warning)}", soft_wrap=True)
    unreadable: list[str] = []
    notes: list[str] = []
    with user_errors(ValueError, OSError):
        written = draw_pictures(input, out_dir, font, name, pred=pred, limit=limit, iou=iou, unreadable=unreadable,
                                replace=own, hierarchy=hierarchy, review=verdict_review, fail=verdict_fail, notes=notes,
                                drop_earlier=recorded_writer(out_dir) == "viz" and not beside_photos)
    console.print(f"[green]drew[/] {written} photo(s) into {escape(str(out_dir))}", soft_wrap=True)
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    for drawn in (input, pred):
        if drawn is not None and (unfinished := unfinished_predictions_note(drawn)):
            console.print(f"[yellow]note:[/] {escape(unfinished)}", soft_wrap=True)
        if drawn is not None and (edited := edited_predictions_note(drawn)):
            console.print(f"[yellow]note:[/] {escape(edited)}", soft_wrap=True)
    # their pictures are grey placeholders naming why
    print_first([f"{p} (drawn as a grey placeholder)" for p in unreadable], " photos drawn as grey placeholders")
