"""`bbuvl data synth`: render synthetic BBU-room (or shapes) photos as a dataset folder or a platform export."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bbuvl.cli.common import (OVERWRITE_HELP, claim_outputs, console, fail, finite_range, int_range, parse_range, parse_size,
                              refuse_unused, stdout_is_tty, user_errors)
from bbuvl.cli.data_tools import warn_long_paths, workers_option
from bbuvl.data.coords import aspect_problem, pixel_bound
from bbuvl.data.faults import FaultCount
from bbuvl.data.layout import DATASET_FILES
from bbuvl.data.regions import parse_grid
from bbuvl.outputs import replacing, writer_of
from bbuvl.synthetic.camera import FRAMINGS, check_size
from bbuvl.synthetic.dataset import ANNOTATIONS, IMAGES, synthesize, written_by_synth
from bbuvl.synthetic.scene import FaultRate
from bbuvl.synthetic.shapes import MAX_SHAPES, SHAPE_CLASSES, synthesize_shapes

FORMATS = ("jsonl", "vendor")
SCENES = ("bbu", "shapes")


def synth(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="Folder to write (created if missing)."),
    n_train: int = typer.Option(200, "--n-train", callback=int_range(0), help="Training photos."),
    n_val: int = typer.Option(40, "--n-val", callback=int_range(0), help="Validation photos."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes byte-identical files."),
    size: str = typer.Option("640x480", "--size", help="Photo size, WIDTHxHEIGHT."),
    fmt: str = typer.Option(
        "jsonl", "--format",
        help="jsonl: dataset folder (train/val/teachers JSONL, labels, summary); "
        "vendor: annotation-platform export (images/ + annotations/, for `bbuvl data convert`).",
    ),
    teachers: int = typer.Option(10, "--teachers", callback=int_range(0), help="Teacher photos to pick from train (jsonl only)."),
    workers: int = typer.Option(1, "--workers", callback=workers_option(1),
                                help="Rendering processes, at most one per CPU core; the output does not depend on it."),
    scene: str = typer.Option(
        "bbu", "--scene",
        help="bbu: equipment rooms (cabinets, BBUs, screws, plugs...); shapes: 1-3 coloured shapes on a plain "
        "background, the class is the colour (a sanity task; see docs/synthetic_scenes.md).",
    ),
    framing: str = typer.Option(
        "wide", "--framing",
        help="bbu scene: wide (the cabinet), closeup (near one BBU, the ODF panel or the ground bar) or mixed (wide at "
        "--wide-share's odds, close-up otherwise).",
    ),
    wide_share: float = typer.Option(
        0.5, "--wide-share", callback=finite_range(0, 1),
        help="--framing mixed: the share of wide photos (e.g. 0.2: a few whole cabinets among close-ups, "
        "docs/faults_learning.md)."),
    tile_share: float = typer.Option(
        0.0, "--tile-share", callback=finite_range(0, 1),
        help="--framing mixed: the share of tiles, each one cell of --tile-grid cut from a whole cabinet four times "
        "the photo's side, as inference tiles the photos technicians take (docs/faults_learning.md); with "
        "--wide-share, at most 1 together."),
    tile_grid: str = typer.Option("3x3", "--tile-grid", help="--tile-share: the grid, COLSxROWS, the tiles are cells of."),
    min_objects: int | None = typer.Option(None, "--min-objects", help="shapes scene: fewest shapes per photo (default 1).",
                                           callback=int_range(1, MAX_SHAPES)),
    max_objects: int | None = typer.Option(None, "--max-objects", help="shapes scene: most shapes per photo (default 3).",
                                           callback=int_range(1, MAX_SHAPES)),
    object_px: str | None = typer.Option(
        None, "--object-px",
        help="shapes scene: every box side MIN-MAX pixels (e.g. 10-24: small parts, below one vision token at the "
        "model's frame); default 15-40 % of the photo's side."),
    fault_rate: float | None = typer.Option(
        None, "--fault-rate", callback=finite_range(0, 1),
        help="bbu scene: the share of photos holding any fault (e.g. 0.3: seven photos in ten pass, as in the field); "
        "default: each part wrong at its own odds, most photos hold a fault."),
    part_fault_rate: float = typer.Option(
        0.3, "--part-fault-rate", callback=finite_range(0, 1),
        help="bbu scene with --fault-rate: the share of parts drawn wrong in a photo that holds a fault (at least one is)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Render equipment-room photos (cabinets, BBUs, screws, plugs, baffles...) or coloured shapes, with exact boxes and labels."""
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    if scene not in SCENES:
        fail(f"--scene must be one of {', '.join(SCENES)}, got '{escape(scene)}'")
    if framing not in FRAMINGS:
        fail(f"--framing must be one of {', '.join(FRAMINGS)}, got '{escape(framing)}'")
    if scene == "shapes" and framing != "wide":
        fail("--framing moves the camera of the bbu scene; the shapes scene has none (drop --framing)")
    # Typed but unused, each was ignored without a word: a vendor export has no teacher pool, a part fault rate
    # applies only within --fault-rate's faulty photos, a tile grid only to --tile-share's tiles.
    refuse_unused(ctx, fmt == "jsonl", "--format jsonl", "teachers")
    if not n_train and teachers and fmt == "jsonl" and getattr(ctx.get_parameter_source("teachers"), "name", "") == "COMMANDLINE":
        fail("--teachers picks from the training photos, and --n-train 0 renders none: leave --teachers out")
    if n_train + n_val == 0:
        fail("--n-train 0 and --n-val 0 ask for no photo: give either a number above 0")
    refuse_unused(ctx, fault_rate is not None, "--fault-rate", "part_fault_rate")
    refuse_unused(ctx, bool(tile_share), "--tile-share", "tile_grid")
    if framing != "mixed" and wide_share != 0.5:
        fail(f"--wide-share mixes framings: it needs --framing mixed, not '{framing}'")
    refuse_unused(ctx, framing == "mixed", "--framing mixed", "wide_share")
    if framing != "mixed" and tile_share:
        fail(f"--tile-share mixes framings: it needs --framing mixed, not '{framing}'")
    if wide_share + tile_share > 1:
        fail(f"--wide-share {wide_share:g} and --tile-share {tile_share:g} are odds of one draw: together at most 1")
    try:
        grid = parse_grid(tile_grid)
    except ValueError as e:
        fail(f"--tile-grid: {e}")
    if scene == "bbu" and (min_objects is not None or max_objects is not None):
        fail("--min-objects/--max-objects are for --scene shapes; the bbu scene plans its own objects")
    if scene == "bbu" and object_px is not None:
        fail("--object-px is for --scene shapes; the bbu scene sizes its own objects")
    if scene == "shapes" and fault_rate is not None:
        fail("--fault-rate is for --scene bbu; shapes have no faults")
    px = parse_range(object_px, "--object-px") if object_px is not None else None
    wh = parse_size(size)
    if wh[0] * wh[1] > pixel_bound():  # every reader here refuses such a photo (a decompression bomb)
        fail(f"--size {size}: {wh[0] * wh[1]:,} pixels, more than the {pixel_bound():,} a photo may hold")
    if (why := aspect_problem(wh)) is not None:
        fail(f"--size {size}: {why}")
    try:
        check_size(wh)
    except ValueError as e:  # the renderer's own words ('image size 50x50 is too small') named no option
        fail(f"--size {escape(size)}: {escape(str(e))}")
    files, folders = ([out / n for n in DATASET_FILES], [out / IMAGES]) if fmt == "jsonl" else ([], [out / IMAGES, out / ANNOTATIONS])
    # What an earlier synth of the other format left goes too: its records beside a new run's images/ (the same
    # names, other photos) passed `data check`, and a vendor export held a stale dataset. Only synth's own goes.
    stale = [p for p in ([out / ANNOTATIONS] if fmt == "jsonl" else [out / n for n in DATASET_FILES])
             if writer_of(p) == "data synth"]
    files += [p for p in stale if p.suffix]
    folders += [p for p in stale if not p.suffix]
    # Set aside whole below: --overwrite gives up synth's photos, never what lies among them
    claim_outputs("data synth", {}, files, folders, overwrite, own=dict.fromkeys(folders, written_by_synth))
    columns = (TextColumn("[bold]rendering"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not stdout_is_tty()) as bar, user_errors(), \
            replacing(files + folders):  # a re-run with fewer photos keeps none of the first's
        task = bar.add_task("render", total=n_train + n_val)
        common = dict(seed=seed, size=wh, fmt=fmt, num_teachers=teachers, workers=workers,
                      progress=lambda done, total: bar.update(task, completed=done))
        if scene == "shapes":
            summary = synthesize_shapes(out, n_train, n_val, min_objects=1 if min_objects is None else min_objects,
                                        max_objects=3 if max_objects is None else max_objects, object_px=px, **common)  # type: ignore[arg-type]
        else:
            faults = FaultRate(fault_rate, part_fault_rate) if fault_rate is not None else None
            summary = synthesize(out, n_train, n_val, framing=framing, faults=faults, wide_share=wide_share,
                                 tile_share=tile_share, tile_grid=grid, **common)  # type: ignore[arg-type]
    warn_long_paths(files + folders)
    console.print(f"{n_train + n_val} photos, {sum(summary['categories'].values())} objects, {summary['labels']} distinct labels")
    for split, c in (summary.get("faults") or {}).items():
        if c["photos"]:
            console.print(f"{split}: {FaultCount(**c).describe()}")
    table = Table(show_edge=False)
    table.add_column("category")
    table.add_column("objects", justify="right")
    for category, n in summary["categories"].items():
        table.add_row(escape(category), str(n))
    console.print(table)
    if scene == "shapes":
        console.print("classes by colour: " + ", ".join(f"{c.colour} = {c.label}" for c in SHAPE_CLASSES))
    where = escape(str(out))
    if fmt == "jsonl" and not n_train:
        console.print(f"[green]wrote[/] {where}/: val.jsonl ({n_val}), labels.json, summary.json, images/; no train.jsonl "
                      f"(--n-train 0): give {escape(str(out / 'val.jsonl'))} itself to data check, eval or training",
                      soft_wrap=True)
    elif fmt == "jsonl":
        console.print(f"[green]wrote[/] {where}/: train.jsonl ({n_train}), val.jsonl ({n_val}), "
                      f"teachers.jsonl ({summary['images']['teachers']}), labels.json, summary.json, images/", soft_wrap=True)
    else:
        v = summary["vendor"]
        console.print(f"[green]wrote[/] {where}/: images/ and annotations/ ({v['FeatureCollection']} FeatureCollection, "
                      f"{v['dataList']} dataList; EXIF-rotated: {v['exif_rotated_oriented_frame']} annotated upright, "
                      f"{v['exif_rotated_raw_frame']} on the raw grid)", soft_wrap=True)
