"""`bbuvl data convert SRC OUT`: the annotation platform's export -> a canonical dataset folder."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from bbuvl.cli.common import (OVERWRITE_HELP, claim_outputs, console, fail, finite_range, int_range, stdout_is_tty,
                              user_errors)
from bbuvl.cli.data_tools import print_skipped, warn_long_paths, workers_option
from bbuvl.config import resolve_frame
from bbuvl.data.convert import ConvertOptions, convert_dataset
from bbuvl.data.layout import DATASET_FILES, ERRORS, IMAGES, named_by_dataset
from bbuvl.data.workers import bound_workers
from bbuvl.outputs import replacing


def convert(
    src: Path = typer.Argument(..., help="Folder with the platform's JSON files and photos (searched recursively)."),
    out: Path = typer.Argument(..., help="Dataset folder to write (images/, train/val/teachers.jsonl, labels.json, "
                                         "summary.json, errors.jsonl)."),
    resize: bool = typer.Option(False, "--resize", help="Pre-scale images to the model frame (smart_resize)."),
    config: Path | None = typer.Option(None, "--config", help="--resize to this run config's image frame."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="--resize to the frame this checkpoint was trained with."),
    min_pixels: int | None = typer.Option(None, "--min-pixels", callback=int_range(1), help="smart_resize minimum pixel count (--resize) (default: the --config's or --checkpoint's frame, else Qwen's)."),
    max_pixels: int | None = typer.Option(None, "--max-pixels", callback=int_range(1), help="smart_resize maximum pixel count (--resize) (default: the --config's or --checkpoint's frame, else Qwen's)."),
    val_ratio: float = typer.Option(0.1, "--val-ratio", help="Fraction of photos held out for validation.",
                                   callback=finite_range(0, 1, hi_open=True)),
    teachers: int = typer.Option(10, "--teachers", help="Size of the teacher pool chosen from the training photos.",
                                  callback=int_range(0)),
    seed: int = typer.Option(42, "--seed", help="Seed of the split and the teacher choice."),
    lang: str = typer.Option("zh", "--lang", help="Label language written to the dataset: zh or en."),
    workers: int | None = typer.Option(None, "--workers", callback=workers_option(1),
                                       help="Worker processes (default, and most: one per CPU core this process may use)."),
    token_map: Path | None = typer.Option(None, "--token-map", help="JSON mapping platform tokens to canonical ones."),
    hierarchy: Path | None = typer.Option(None, "--hierarchy", help="Label hierarchy JSON (default: the shipped one)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Convert the platform's per-photo JSON + images into a dataset; bad files and objects go to errors.jsonl."""
    if lang not in ("zh", "en"):
        fail(f"--lang must be 'zh' or 'en', got '{lang}'")
    if not resize and (config or checkpoint or min_pixels or max_pixels):
        fail("--config, --checkpoint, --min-pixels and --max-pixels set the frame of --resize; add --resize")
    outputs = [*(out / n for n in (*DATASET_FILES, ERRORS)), out / IMAGES]
    claim_outputs("data convert", {"SRC": src, "--config": config, "--checkpoint": checkpoint, "--token-map": token_map,
                                   "--hierarchy": hierarchy}, outputs[:-1], outputs[-1:], overwrite,
                  own={out / IMAGES: named_by_dataset(out)})  # its photos set aside whole below, nothing among them
    frame = None
    if resize:
        with user_errors():
            frame = resolve_frame(config, checkpoint, min_pixels, max_pixels)
    opts = ConvertOptions(
        frame=frame, val_ratio=val_ratio, teachers=teachers,
        seed=seed, lang=lang, workers=bound_workers(workers), token_map=token_map, hierarchy=hierarchy,
    )
    earlier = [p for p in outputs if os.path.lexists(p)]
    try:
        with user_errors(), replacing(outputs):  # a re-run from another SRC keeps none of the first's photos
            summary = convert_dataset(src, out, opts, progress=stdout_is_tty())
            if summary["photos"]["converted"] == 0 and earlier:
                raise _NothingConverted(summary["errors"], _first_errors(out))
    except _NothingConverted as e:
        # Set aside by `replacing` and put back: a re-run on an export none of whose photos converts deleted the dataset
        # OUT held (its JSONL and photos), and failed.
        print_skipped(e.first)
        fail(f"no photo under {src} could be converted ({e.count} problem(s)); nothing was written: {out} keeps what "
             "it held", code=1)
    warn_long_paths(outputs)
    console.print(summary_table(summary))
    if summary["photos"]["folded_with_other_boxes"]:  # the one kept may be the wrong one: say so, not only count it
        console.print(f"[yellow]{summary['photos']['folded_with_other_boxes']} photo(s) exported under two names carry "
                      f"other boxes under each[/]: the first name's were kept; see 'same_as' in "
                      f"{escape(str(out / ERRORS))}", soft_wrap=True)
    if summary.get("near_copies", {}).get("photos"):  # the pixels of another photo, saved again: kept, the user decides
        console.print(f"[yellow]{summary['near_copies']['photos']} photo(s) have the pixels of another photo converted[/] "
                      "(saved again at another quality, size or format): both kept, on one side of the split; see "
                      f"'near_copy_of' in {escape(str(out / ERRORS))}", soft_wrap=True)
    n_errors = summary["errors"]
    if n_errors:
        print_skipped(_first_errors(out))
        console.print(f"[yellow]{n_errors} problem(s)[/] listed in {escape(str(out / ERRORS))}", soft_wrap=True)
    if summary["photos"]["converted"] == 0:
        fail(f"no photo under {src} could be converted; see {out / ERRORS}", code=1)
    console.print(f"[green]ok[/]: dataset written to {escape(str(out))}", soft_wrap=True)


class _NothingConverted(Exception):
    """No photo converted, where OUT held outputs of an earlier run: `count` problems, the `first` of them."""

    def __init__(self, count: int, first: list[dict[str, Any]]) -> None:
        super().__init__(count)
        self.count, self.first = count, first


def _first_errors(out: Path, limit: int = 5) -> list[dict[str, Any]]:
    """The first `limit` entries of the errors.jsonl this command just wrote in `out`."""
    with (out / ERRORS).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in itertools.islice(fh, limit)]


def summary_table(summary: dict[str, Any]) -> Table:
    """The conversion summary as a two-column table."""
    table = Table(title="bbuvl data convert", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    photos, objects, exif = summary["photos"], summary["annotations"], summary["exif"]
    rows = [
        ("photos found", photos["found"]),
        ("photos converted", photos["converted"]),
        ("photos failed", photos["failed"]),
        ("photos folded (converted already, under another name)", photos["folded"]),
        ("  with other boxes than the one kept", photos["folded_with_other_boxes"]),
        ("objects converted", objects["converted"]),
        ("objects dropped (invalid)", objects["dropped"]),
        ("objects dropped (duplicate)", objects["duplicates"]),
        ("objects lost with their photo", objects["lost_with_photo"]),
        ("objects of folded photos", objects["in_folded_photos"]),
        ("boxes clipped to the image", objects["clipped"]),
        ("EXIF-rotated photos", exif["rotated"]),
        ("  annotated on the raw grid", exif["annotated_on_raw"]),
        ("  annotated as displayed", exif["annotated_on_displayed"]),
        ("  frame ambiguous, displayed assumed", exif["assumed_displayed"]),
        ("annotator saw another resolution", summary["annotator_resolution_differs"]),
    ]
    if "images" in summary:
        rows += [("train / val / teachers", "{train} / {val} / {teachers}".format(**summary["images"]))]
    for name, value in rows:
        table.add_row(escape(name), escape(str(value)))
    for category, n in summary["categories"].items():
        table.add_row(escape(f"label: {category}"), str(n))
    return table
