"""`bbuvl data synth`: render synthetic BBU-room photos as a dataset folder or a platform export."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bbuvl.cli.common import console, fail, parse_size, stdout_is_tty, user_errors
from bbuvl.data.synth import synthesize

FORMATS = ("jsonl", "vendor")


def synth(
    out: Path = typer.Argument(..., help="Folder to write (created if missing)."),
    n_train: int = typer.Option(200, "--n-train", min=0, help="Training photos."),
    n_val: int = typer.Option(40, "--n-val", min=0, help="Validation photos."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes byte-identical files."),
    size: str = typer.Option("640x480", "--size", help="Photo size, WIDTHxHEIGHT."),
    fmt: str = typer.Option(
        "jsonl", "--format",
        help="jsonl: dataset folder (train/val/teachers JSONL, labels, summary); "
        "vendor: annotation-platform export (images/ + annotations/, for `bbuvl data convert`).",
    ),
    teachers: int = typer.Option(10, "--teachers", min=0, help="Teacher photos to pick from train (jsonl only)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Rendering processes; the output does not depend on it."),
) -> None:
    """Render equipment-room photos (cabinets, BBUs, screws, plugs, baffles...) with exact boxes and labels."""
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    wh = parse_size(size)
    columns = (TextColumn("[bold]rendering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not stdout_is_tty()) as bar, user_errors():
        task = bar.add_task("render", total=n_train + n_val)
        summary = synthesize(out, n_train, n_val, seed=seed, size=wh, fmt=fmt, num_teachers=teachers, workers=workers,  # type: ignore[arg-type]
                             progress=lambda done, total: bar.update(task, completed=done))
    console.print(f"{n_train + n_val} photos, {sum(summary['categories'].values())} objects, {summary['labels']} distinct labels")
    table = Table(show_edge=False)
    table.add_column("category")
    table.add_column("objects", justify="right")
    for category, n in summary["categories"].items():
        table.add_row(category, str(n))
    console.print(table)
    if fmt == "jsonl":
        console.print(f"[green]wrote[/] {out}/: train.jsonl ({n_train}), val.jsonl ({n_val}), "
                      f"teachers.jsonl ({summary['images']['teachers']}), labels.json, summary.json, images/")
    else:
        v = summary["vendor"]
        console.print(f"[green]wrote[/] {out}/: images/ and annotations/ ({v['FeatureCollection']} FeatureCollection, "
                      f"{v['dataList']} dataList; EXIF-rotated: {v['exif_rotated_oriented_frame']} annotated upright, "
                      f"{v['exif_rotated_raw_frame']} on the raw grid)")
