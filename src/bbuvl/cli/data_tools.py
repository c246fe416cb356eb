"""`bbuvl data check|stats|teachers|split|tile|import-coco|export-coco`: inspect and reshape datasets."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bbuvl.atomic import write_text_atomic
from bbuvl.cli.common import (FILE_OUT, OVERWRITE_HELP, claim_outputs, console, fail, finite_range, int_range, print_first,
                              stdout_is_tty, user_errors)
from bbuvl.config import resolve_frame
from bbuvl.data.check import check_dataset
from bbuvl.data import coco_files
from bbuvl.data.labels import Hierarchy
from bbuvl.data.input_paths import file_kind
from bbuvl.data.jsonfile import dumps_json
from bbuvl.data.layout import (DATASET_FILES, ERRORS, TEACHERS, TRAIN, VAL, missing_file_hint, named_by_dataset,
                               near_file, unfinished_hint)
from bbuvl.data.names import long_paths_warning, portability_problem
from bbuvl.data.schema import ImageRecord, iter_dataset, one_line_per_photo, require_photos
from bbuvl.data.regions import parse_grid
from bbuvl.data.split import split_photos
from bbuvl.data.stats import named_stats
from bbuvl.data.teachers import choose_teacher_pool, coverage
from bbuvl.data.tiling import IMAGES, TileSpec, tile_dataset, tile_sources, written_by_tile
from bbuvl.data.text import short_words, show_text
from bbuvl.data.workers import bound_workers, workers_note
from bbuvl.outputs import refuse_inputs_being_written, replacing

HIERARCHY_HELP = "Label hierarchy JSON (default: the shipped one)."


def _hierarchy(path: Optional[Path]) -> Hierarchy:
    with user_errors():
        return Hierarchy.load(path)


def workers_option(lo: int) -> Callable[[int | None], int | None]:
    """A typer callback for `--workers`: a whole number >= `lo`, clamped to the CPU cores this process may use with a
    one-line note (data/workers.py): the output never depends on it, and 100000 started that many processes."""
    in_range = int_range(lo)

    def bound(value: int | None) -> int | None:
        in_range(value)
        note = workers_note(value)
        if note:
            console.print(note, style="yellow", markup=False, soft_wrap=True)
        return bound_workers(value) if value else value

    return bound


def warn_long_paths(written: list[Path]) -> None:
    """Print, once, the longest path among the files `written` (files or folders) that Windows would not open."""
    if (warning := long_paths_warning(written)) is not None:
        console.print(warning, style="yellow", markup=False, soft_wrap=True)


def print_skipped(entries: Iterable[dict[str, Any]], document: Path | None = None, limit: int = 5) -> None:
    """The first `limit` entries of an errors.jsonl, one line each: the file (for a COCO `document`, its entry) and why.

    A command that skips what it cannot read said only how many and where the list is: the file at fault was named
    nowhere on screen."""
    lines = []
    for e in itertools.islice(entries, limit):
        file, reason = str(e.get("file") or ""), str(e.get("reason", ""))
        if document is not None:  # an entry is named by its JSON path; a photo dropped after reading, by its file
            where = " ".join(w for w in (str(e.get("entry") or ""), f"({file})" if file else "") if w)
            lines.append(f"{document}: {where}: {reason}" if where else f"{document}: {reason}")
        else:
            obj = f", object {e['object']}" if e.get("object") is not None else ""
            lines.append(f"{file}{obj}: {reason.removeprefix(f'{file}: ')}")
    print_first([short_words(line) for line in lines], limit=limit)


def _not_being_written(inputs: dict[str, Path | None]) -> None:
    """Fail naming the command still writing an input of a command that claims no output (`claim_outputs` checks the
    others'): `data check` on a folder `data synth` was filling said 'teachers.jsonl: missing', one error of a dataset
    that was only not finished."""
    with user_errors(ValueError):
        refuse_inputs_being_written(inputs)


def _require_input(path: Path) -> None:
    """Fail unless `path` is there (a file or a folder), saying so of a link that reaches nothing (a loop too)."""
    if not path.exists():
        # A file another command is writing is not there until it is whole (atomic.py): 'no such file' of the
        # train.jsonl `data synth` was about to write sent the user looking for a mistyped name.
        _not_being_written({"PATH": path})
        fail(f"{path}: {'a link that reaches no file or folder' if path.is_symlink() else 'no such file or folder'}"
             f"{unfinished_hint(path)}")


# --- check -------------------------------------------------------------------------------------


def check(
    path: Path = typer.Argument(..., help="A dataset JSONL, or a dataset folder (checks train/val/teachers.jsonl)."),
    hierarchy: Optional[Path] = typer.Option(None, "--hierarchy", help=HIERARCHY_HELP),
    decode: bool = typer.Option(True, "--decode/--no-decode", help="Decode every image (slow, finds truncated files)."),
    workers: int = typer.Option(0, "--workers", callback=workers_option(0),
                                help="Image threads, at most one per CPU core (0 = automatic)."),
) -> None:
    """Find every problem in a dataset: schema, images, sizes, boxes, labels, duplicates, order."""
    _require_input(path)
    _not_being_written({"PATH": path, "--hierarchy": hierarchy})
    h = _hierarchy(hierarchy)
    with Progress(
        TextColumn("checking images"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not stdout_is_tty(),
    ) as progress:
        task = progress.add_task("images", total=None)
        problems = check_dataset(
            path, h, decode_images=decode, workers=workers or None,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for p in problems:
        console.print(str(p), style="red" if p.severity == "error" else "yellow", markup=False, soft_wrap=True)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if errors:
        console.print(f"[bold red]{errors} error(s)[/], {warnings} warning(s) in {escape(str(path))}", soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[bold green]ok[/]: {escape(str(path))} has no errors ({warnings} warning(s))", soft_wrap=True)


# --- stats -------------------------------------------------------------------------------------


def _stats_records(path: Path, seen: list[tuple[Path, int, ImageRecord]]) -> Iterator[tuple[ImageRecord, str]]:
    """Photos of a JSONL file, or of a dataset folder's train and val files, each with where it was read (`file:line`),
    as they are read; `seen` gets each line's photo without its objects, for the check of repeats once all are read."""
    files = [path / TRAIN, path / VAL] if path.is_dir() else [path]
    files = [f for f in files if file_kind(f) != "no such file"]  # reading a folder or a pipe names what it is
    if not files:
        fail(f"{path}: no {TRAIN} or {VAL} in this folder{missing_file_hint(path, TRAIN)}")
    for name in (TRAIN, VAL) if path.is_dir() else ():
        if path / name not in files and near_file(path, name) is not None:
            # Counted without them, the photos of a `Val.jsonl` were left out of every number without a word
            fail(f"{path / name}: missing{missing_file_hint(path, name)}")
    for f in files:
        for row in iter_dataset(f):
            if row.error is not None:
                raise row.error
            seen.append((f, row.line, row.sample.student.model_copy(update={"objects": []})))
            yield row.sample.student, f"{f}:{row.line}"
        console.print(f"read {f}", style="dim", markup=False, soft_wrap=True)


def _table(title: str, columns: list[str], rows: list[list[Any]], keyed: bool = True) -> Table:
    """A table whose first column is a key (left-aligned) when `keyed`, the rest numbers (right-aligned)."""
    t = Table(title=escape(title), title_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if keyed and i == 0 else "right", overflow="fold")
    for r in rows:
        t.add_row(*(f"{v:.1f}" if isinstance(v, float) else escape(str(v)) for v in r))  # keys are labels: never markup
    return t


def _wxh(size: list[int] | None) -> str:
    return f"{size[0]}x{size[1]}" if size else "-"


def _print_stats(s: dict[str, Any]) -> None:
    n = max(s["objects"], 1)

    def counts_table(title: str, counts: dict[str, int]) -> Table:
        return _table(title, ["label", "objects", "share"], [[k, v, f"{100 * v / n:.1f}%"] for k, v in counts.items()])

    console.print(counts_table("Labels", s["labels"]))
    for level, counts in list(s["levels"].items())[:-1]:  # the deepest level is the labels table above
        console.print(counts_table(f"Level {level}", counts))
    per = s["objects_per_image"]
    summary = ["min", "mean", "median", "max"]
    console.print(_table("Objects per image", summary, [[per[k] for k in summary]], keyed=False))
    most = max(per["histogram"].values(), default=0) or 1
    bars = [[k, v, "█" * round(20 * v / most)] for k, v in per["histogram"].items()]
    console.print(_table("Objects per image (histogram)", ["objects", "images", ""], bars))
    sizes = s["image_sizes"]
    row = [sizes["distinct"], _wxh(sizes["min"]), _wxh(sizes["max"]), next(iter(sizes["counts"]), "-")]
    console.print(_table("Image sizes", ["distinct", "smallest", "largest", "most common"], [row], keyed=False))
    vt = s["vision_tokens"]
    columns = ["min", "mean", "max", "total", "min_pixels", "max_pixels"]
    console.print(_table("Vision tokens per image (model frame)", columns, [[vt[k] for k in columns]], keyed=False))
    console.print(f"{s['images']} images, {s['objects']} objects, {len(s['labels'])} labels")


def stats(
    path: Path = typer.Argument(..., help="A dataset JSONL, or a dataset folder (train + val)."),
    min_pixels: Optional[int] = typer.Option(None, "--min-pixels", callback=int_range(1), help="smart_resize lower bound (default: the --config's or --checkpoint's frame, else Qwen's)."),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", callback=int_range(1), help="smart_resize upper bound (default: the --config's or --checkpoint's frame, else Qwen's)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Run config: use its image frame (pixels, token budget)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Checkpoint: use the frame it was trained with."),
    json_out: Optional[Path] = typer.Option(None, "--json", metavar=FILE_OUT, help="Also write the statistics to this JSON file."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Counts per label and level, objects per image, image sizes, vision tokens in the model frame."""
    _require_input(path)
    _not_being_written({"PATH": path, "--config": config, "--checkpoint": checkpoint})
    if json_out is not None:
        claim_outputs("data stats", {"PATH": path, "--config": config, "--checkpoint": checkpoint}, [json_out], overwrite=overwrite)
    with user_errors():
        contract = resolve_frame(config, checkpoint, min_pixels, max_pixels)
    seen: list[tuple[Path, int, ImageRecord]] = []
    with user_errors():
        s = named_stats(_stats_records(path, seen), contract)  # counted as read: 20,000 photos' records held 280 MB
        one_line_per_photo(seen)  # counted twice, its boxes and labels would weigh double
        require_photos(seen, path)
    _print_stats(s)
    if json_out is not None:
        with user_errors(OSError):
            write_text_atomic(json_out, dumps_json(s, indent=2) + "\n")
        console.print(f"wrote {json_out}", markup=False, soft_wrap=True)


# --- teachers and split ------------------------------------------------------------------------


def teachers(
    dataset: Path = typer.Argument(..., help="Training JSONL to choose teacher photos from."),
    out: Path = typer.Argument(..., metavar=FILE_OUT, help="Teacher JSONL to write."),
    k: int = typer.Option(10, "--k", callback=int_range(1), help="How many teacher photos."),
    seed: int = typer.Option(42, "--seed", help="Seed for tie-breaking."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Choose a coverage-greedy teacher pool: new labels first, then density, position and size buckets."""
    # The validation file beside FILE is read (its photos are kept out of the pool), so it is an input: FILE named
    # val.jsonl replaced it, --overwrite or not.
    claim_outputs("data teachers", {"DATASET": dataset, f"{VAL} beside FILE": out.parent / VAL}, [out],
                  overwrite=overwrite)
    with user_errors():
        pool = choose_teacher_pool(dataset, out, k, seed)
    records, chosen = pool.records, pool.chosen
    if pool.skipped:
        copy, of = next(iter(pool.skipped.items()))
        console.print(f"{len(pool.skipped)} photo(s) not taken as teachers: near-copies of a teacher chosen (e.g. "
                      f"{records[copy].image}, a copy of {records[of].image})", markup=False, soft_wrap=True)
    if pool.held_out:
        copy, (line, image) = next(iter(pool.held_out.items()))
        console.print(f"{len(pool.held_out)} photo(s) not taken as teachers: near-copies of validation photos in "
                      f"{out.parent / VAL}, whose answers a teacher shows in training prompts (e.g. "
                      f"{records[copy].image}, a copy of {image}, line {line})", markup=False, soft_wrap=True)
    t = Table(title=f"{len(chosen)} teachers from {len(records)} photos", title_justify="left")
    for c in ("#", "image", "objects", "new labels", "density", "centre cell", "box sizes"):
        t.add_column(c, overflow="fold")
    seen: set[str] = set()
    for n, i in enumerate(chosen, 1):
        f = coverage(records[i])
        new = sorted(f.labels - seen)
        seen |= f.labels
        t.add_row(str(n), escape(records[i].image), str(len(records[i].objects)), escape("\n".join(new)) or "-",
                  ["<=3", "<=10", ">10"][f.density], str(f.spatial) if f.spatial >= 0 else "-",
                  ",".join(["<5%", "<20%", ">=20%"][b] for b in sorted(f.sizes)) or "-")
    console.print(t)
    all_labels = {o.desc for r in records for o in r.objects}
    missing = sorted(all_labels - seen)
    missing_text = f"; missing: {', '.join(missing)}" if missing else ""
    console.print(f"labels covered: {len(seen)} of {len(all_labels)}{missing_text}", markup=False, soft_wrap=True)
    console.print(f"wrote {out}", markup=False, soft_wrap=True)


def split(
    dataset: Path = typer.Argument(..., help="JSONL to split."),
    out_dir: Path = typer.Argument(..., help="Folder for train.jsonl, val.jsonl and teachers.jsonl."),
    val_ratio: float = typer.Option(0.1, "--val-ratio", callback=finite_range(0, 0.99), help="Share of photos for validation."),
    seed: int = typer.Option(42, "--seed", help="Shuffle and teacher seed."),
    num_teachers: int = typer.Option(10, "--teachers", callback=int_range(0), help="Teacher photos to choose from the new train split."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Seeded train/validation split, and a teacher pool from its train part; image paths resolve from OUT_DIR."""
    outputs = [out_dir / n for n in (TRAIN, VAL, TEACHERS)]
    claim_outputs("data split", {"DATASET": dataset}, outputs, overwrite=overwrite)
    with user_errors(), replacing(outputs):  # a failed re-run leaves the earlier split whole, never half of each
        result = split_photos(dataset, out_dir, val_ratio, seed, num_teachers)
    console.print(f"{result.train} train, {result.val} val photos, {result.teachers} teachers from train "
                  f"(seed {seed}) -> {out_dir}", markup=False, soft_wrap=True)
    if result.near_copies:  # photos a tool saved again: kept, and kept together, but the user may want one of each
        groups = len(result.near_copies)
        console.print(f"{groups} group{'s' if groups > 1 else ''} of near-copies (one photo saved again: another JPEG "
                      f"quality, PNG, a smaller size, its EXIF turn in its pixels, mirrored or turned), "
                      f"{sum(map(len, result.near_copies))} photos, each kept on one side: "
                      # a few of each group: a folder of one photo saved 1,600 times made a line of 19,000 characters
                      + "; ".join(", ".join(g[:3]) + (f" and {len(g) - 3} more" if len(g) > 3 else "")
                                  for g in result.near_copies[:5])
                      + (f"; and {groups - 5} more" if groups > 5 else "")
                      + ". `bbuvl data check` names each; remove a copy if its boxes should not count twice",
                      style="yellow", markup=False, soft_wrap=True)


# --- COCO --------------------------------------------------------------------------------------


def import_coco(
    annotations: Path = typer.Argument(..., help="COCO detection JSON (instances_*.json)."),
    images_dir: Path = typer.Argument(..., help="Folder that COCO file_name paths are relative to."),
    out: Path = typer.Argument(..., help="Dataset folder to create."),
    val_ratio: float = typer.Option(0.1, "--val-ratio", callback=finite_range(0, 0.99), help="Share of photos for validation."),
    num_teachers: int = typer.Option(10, "--teachers", callback=int_range(0), help="Teacher photos to choose from train."),
    seed: int = typer.Option(42, "--seed", help="Split and teacher seed."),
    hierarchy: Optional[Path] = typer.Option(None, "--hierarchy", help=HIERARCHY_HELP),
    link: bool = typer.Option(False, "--link/--copy", help="Hard-link images instead of copying them."),
    allow_outside: bool = typer.Option(False, "--allow-outside", help="Also copy photos whose file_name (absolute, "
                                       "'..' or a link) leads outside IMAGES_DIR; refused by default."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Import the photos even when none of them holds a "
                                     "box (an empty or wholly unusable annotations list): photos meant to show no "
                                     "parts. Refused by default, as a file exported without its boxes."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Turn a COCO detection file into a dataset folder (images copied into OUT/images)."""
    outputs = [out / n for n in (*DATASET_FILES, ERRORS)]
    claim_outputs("data import-coco", {"ANNOTATIONS": annotations, "IMAGES_DIR": images_dir, "--hierarchy": hierarchy},
                  outputs, [out / IMAGES], overwrite=overwrite, own={out / IMAGES: named_by_dataset(out)})
    h = _hierarchy(hierarchy)
    with user_errors(), replacing([*outputs, out / IMAGES]):  # a re-run from another COCO file keeps none of its photos
        result = coco_files.import_coco(annotations, images_dir, out, val_ratio, num_teachers, seed, h, link, allow_outside,
                                        allow_empty)
    warn_long_paths([*outputs, out / IMAGES])
    for written, (label, n) in result.from_english.items():  # one language: `data check` warns of two names for a part
        console.print(f"label {show_text(written)} ({n} objects) is the hierarchy's English for {show_text(label)}: "
                      "imported as that", markup=False, soft_wrap=True)
    for label, n in result.unknown_labels.items():
        console.print(f"warning: label {show_text(label)} ({n} objects) is not in the hierarchy: {h.problem(label)}",
                      style="yellow", markup=False, soft_wrap=True)
    n = result.summary["images"]
    console.print(f"{n['train']} train, {n['val']} val, {n['teachers']} teachers, {result.summary['labels']} labels -> {out}",
                  markup=False, soft_wrap=True)
    if result.summary["size_from_photo"]:
        console.print(f"{result.summary['size_from_photo']} photo(s) have no width and height in the COCO file: each "
                      "was read from the photo, upright (a photo shown turned by its EXIF: its file's own grid, where "
                      "only that holds its boxes)", markup=False, soft_wrap=True)
    if result.summary["boxes_from_segmentation"]:
        console.print(f"{result.summary['boxes_from_segmentation']} box(es) read from their annotation's segmentation "
                      "(no bbox given, or one of no width and height): the extent of its polygons or mask", markup=False, soft_wrap=True)
    same = result.summary["same_photo"]
    if same["folded"]:  # one photo under two names or entries: imported once, the first entry's boxes kept
        differ = (f", {same['other_boxes']} of them with other boxes than the entry kept: check those in {out / ERRORS}"
                  if same["other_boxes"] else ", with the same boxes")
        one = same["folded"] == 1
        console.print(f"{same['folded']} entr{'y' if one else 'ies'} named a photo imported already (the same file, or "
                      f"its bytes or compressed pixels under another name) and {'was' if one else 'were'} folded into it{differ}",
                      style="yellow" if same["other_boxes"] else None, markup=False, soft_wrap=True)
    if result.summary.get("near_copies"):  # the pixels of another photo, saved again: kept, the user decides
        console.print(f"{result.summary['near_copies']} photo(s) have the pixels of another photo imported (saved again "
                      "at another quality, size or format): both kept, on one side of the split; see 'near_copy_of' in "
                      f"{out / ERRORS}", style="yellow", markup=False, soft_wrap=True)
    turned = result.summary["exif"]["annotated_on_raw"]
    if turned:  # an assumption the user can check: say it
        console.print(f"{turned} EXIF-rotated photos have the COCO size of their file's own grid: their boxes were read "
                      "on that grid and turned upright with the photo", markup=False, soft_wrap=True)
    if result.summary["exif"]["assumed_displayed"]:  # an assumption the user can check: say it
        console.print(f"{result.summary['exif']['assumed_displayed']} EXIF-turned photo(s) are square or only flipped: "
                      "their COCO size cannot tell the file's grid from the one viewers show, and their boxes were read "
                      "on the one viewers show", markup=False, soft_wrap=True)
    if result.summary["resolution_differs"]:
        console.print(f"{result.summary['resolution_differs']} photo(s) are of another resolution than the COCO file "
                      "gives them, with the same shape (photos resized since they were annotated): their boxes were "
                      "scaled to the photo", markup=False, soft_wrap=True)
    if result.outside:
        console.print(f"[yellow]{result.outside} photos outside {escape(str(images_dir))} were not copied[/] "
                      "(--allow-outside copies them)", soft_wrap=True)
    if result.errors:
        print_skipped(result.errors, annotations)
    if skipped := result.summary.get("skipped"):  # the near copies in errors.jsonl were imported: said above
        console.print(f"[yellow]{skipped} entries skipped[/]: see {escape(str(out / ERRORS))}", soft_wrap=True)


def export_coco(
    dataset: Path = typer.Argument(..., help="Dataset JSONL to export."),
    out: Path = typer.Argument(..., metavar=FILE_OUT, help="COCO JSON to write (file_name relative to its folder)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Write a dataset as a COCO detection file (categories = sorted labels, boxes xywh)."""
    claim_outputs("data export-coco", {"DATASET": dataset}, [out], overwrite=overwrite)
    with user_errors():
        coco = coco_files.export_coco(dataset, out)
    console.print(f"{len(coco['images'])} images, {len(coco['annotations'])} boxes, "
                  f"{len(coco['categories'])} categories -> {out}", markup=False, soft_wrap=True)
    # The names are the dataset's own files, so none is renamed here (data/names.py).
    print_first([f"file_name {im['file_name']}: {why}" for im in coco["images"]
                 if (why := portability_problem(im["file_name"])) is not None])


# --- tile --------------------------------------------------------------------------------------


def tile(
    dataset: Path = typer.Argument(..., help="A dataset folder (tiles train.jsonl and val.jsonl) or one JSONL (as train)."),
    out: Path = typer.Argument(..., help="Dataset folder to create: the tiles as photos, with their boxes."),
    grid: str = typer.Option("2x2", "--grid", help="Tiles per photo, COLSxROWS: the grid predict will use."),
    overlap: float = typer.Option(0.15, "--overlap", callback=finite_range(0, 0.9),
                                  help="Width of the strip neighbouring tiles share, as a share of the "
                                  "shorter side of a grid cell (the photo's side over the grid)."),
    zoom: float = typer.Option(1.0, "--zoom", callback=finite_range(0.25, 8),
                               help="Write each tile magnified this many times (the scale predict will show it at)."),
    whole: bool = typer.Option(True, "--whole/--tiles-only", help="Keep each whole photo beside its tiles."),
    empty: float = typer.Option(1.0, "--empty", callback=finite_range(0, 1),
                                help="Share of tiles with no object to keep (a seeded choice)."),
    num_teachers: int = typer.Option(10, "--teachers", callback=int_range(0), help="Teacher photos to choose from train."),
    seed: int = typer.Option(42, "--seed", help="Teacher and empty-tile seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Cut every photo into the tile grid inference will use; boxes cut by a tile follow the visibility rule."""
    try:
        cols_rows = parse_grid(grid)
    except ValueError as e:
        fail(f"--grid: {e}")
        raise
    with user_errors():
        spec = TileSpec(cols_rows, overlap=overlap, zoom=zoom, whole=whole, empty=empty, seed=seed)
    outputs = [out / n for n in DATASET_FILES]
    claim_outputs("data tile", {"DATASET": dataset}, outputs, [out / IMAGES], overwrite,
                  own={out / IMAGES: written_by_tile})  # its tiles set aside whole below, nothing among them
    notes: list[str] = []
    with user_errors():
        sources = tile_sources(dataset, out, notes)
    for note in notes:
        console.print(f"note: {note}", style="yellow", markup=False, soft_wrap=True)
    columns = (TextColumn("[bold]tiling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not stdout_is_tty()) as bar, user_errors(), \
            replacing([*outputs, out / IMAGES]):  # a re-run with another grid leaves no tile of the first (docs/outputs.md)
        task = bar.add_task("tile", total=None)
        summary = tile_dataset(dataset, out, spec, num_teachers, sources=sources,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    warn_long_paths([*outputs, out / IMAGES])
    if copies := summary["tiles"]["copies_with_boxes_left_out"]:
        first = copies[0]
        console.print(f"warning: {len(copies)} tile(s) holding {sum(c['boxes'] for c in copies)} box(es) left out, "
                      f"their pixels the same bytes as a tile written before (a featureless region cut twice: the same "
                      f"photo twice is an error for `bbuvl data check`), the first {first['tile']} (as "
                      f"{first['same_as']}); every one is listed in {out / 'summary.json'} "
                      "(tiles.copies_with_boxes_left_out)", style="yellow", markup=False, soft_wrap=True)
    images, objects = summary["images"], summary["objects"]
    console.print(f"{images['train']} train and {images['val']} val tiles ({objects['train']} and {objects['val']} objects), "
                  f"grid {cols_rows[0]}x{cols_rows[1]}{', with each whole photo' if whole else ''} -> {out}", markup=False,
                  soft_wrap=True)
