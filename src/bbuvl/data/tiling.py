"""`bbuvl data tile`: cut every photo of a dataset into the tile grid inference will use, as a dataset to inspect or train on.

A model that predicts on tiles should have trained at the tiles' scale: a tile of a wide photo, resized to the
checkpoint's frame, shows its screws several times larger than the whole photo does. Each tile is written as
its own photo, magnified by `zoom` (1.0: the stored pixels, which the training frame then resizes as it would at
inference), with the boxes that the visibility rule of `bbuvl.data.regions` keeps, scaled alike. Training on
small tiles at the scale inference shows whole ones costs a fraction of the vision tokens per sample. With
`whole=True` the whole photo is kept beside its tiles, so the model also learns the one-pass scale; `empty`
thins out tiles with nothing in them (docs/tiles.md).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from bbuvl.atomic import name_or_temporary, write_bytes_atomic
from bbuvl.data.check import check_boxes
from bbuvl.data.coords import aspect_problem, box_is_degenerate, pixel_bound
from bbuvl.data.images import load_image
from bbuvl.data.input_paths import file_kind
from bbuvl.data.layout import DATASET_FILES, IMAGES, TRAIN, VAL, missing_file_hint, write_dataset_folder
from bbuvl.data.library_outputs import holding_outputs
from bbuvl.data.names import NameBook, fit_name, portable_path, safe_stem
from bbuvl.data.regions import Region, grid_regions, magnified_record, tile_side_overlap
from bbuvl.data.schema import DatasetError, ImageRecord, one_line_per_photo, read_lines, require_photos, resolve_image
from bbuvl.paths import real_path

# The only names a run writes into images/ (`tile_record`: split, the photo's stem, the region), and its temporaries'.
_TILE = r"[^/]+__\d+_\d+_\d+x\d+\.(?:jpg|png)"
_OWN_NAME = re.compile(rf"(?:train|val)/(?:[^/]+/)*{name_or_temporary(_TILE)}")


def written_by_tile(name: str) -> bool:
    """Whether `name`, relative to images/, is one a run of `tile_dataset` writes there."""
    return _OWN_NAME.fullmatch(name) is not None


def _encoded(image: Image.Image, suffix: str) -> bytes:
    buf = io.BytesIO()
    if suffix in (".jpg", ".jpeg"):
        image.save(buf, "JPEG", quality=95)
    else:
        image.save(buf, "PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class TileSpec:
    """How each photo is cut: the grid, the overlap, the magnification, the whole photo, and how many empty tiles stay."""

    grid: tuple[int, int]
    overlap: float = 0.15  # share of a tile's side its neighbour also covers
    zoom: float = 1.0  # each tile is written at this many pixels per stored pixel (the scale inference will show it)
    whole: bool = True  # keep the whole photo (unresized) beside its tiles
    empty: float = 1.0  # share of tiles without objects to keep, chosen by a seeded hash of each tile's name
    seed: int = 42

    def __post_init__(self) -> None:
        if self.zoom != 1.0 and self.grid == (1, 1):
            # The one region of a 1x1 grid is the whole photo, which is kept as taken: --zoom 2 wrote every photo
            # unmagnified, without a word, and the run trained at a scale it was not asked for.
            raise ValueError(f"--zoom {self.zoom:g} magnifies tiles, and a 1x1 grid has none: its one region is the "
                             "whole photo, kept as taken; choose a grid of more tiles (e.g. 2x2)")

    def keeps_empty(self, name: str) -> bool:
        """Whether the empty tile `name` is among the kept share."""
        if self.empty >= 1.0:
            return True
        h = int.from_bytes(hashlib.sha256(f"{self.seed}:{name}".encode()).digest()[:8], "big")
        return h / 2**64 < self.empty


def cut(size: tuple[int, int], spec: TileSpec) -> list[tuple[Region, tuple[int, int]]]:
    """Each region of a `size` photo that `spec` writes (the whole photo first, when kept) and its written size."""
    whole = (0, 0, *size)
    regions = grid_regions(size, *spec.grid, overlap=tile_side_overlap(size, spec.grid, spec.overlap))
    if spec.whole and regions != [whole]:
        regions = [whole, *regions]
    zoomed = [(r, (r[2] - r[0], r[3] - r[1])) for r in regions]
    return [(r, s if r == whole or spec.zoom == 1.0 else (max(1, round(s[0] * spec.zoom)), max(1, round(s[1] * spec.zoom))))
            for r, s in zoomed]


def too_large(size: tuple[int, int], spec: TileSpec) -> str | None:
    """Why `spec` cannot tile a `size` photo (a zoomed tile past the pixels any photo is read at, or one no model frame
    holds), or None."""
    regions = cut(size, spec)
    whole = (0, 0, *size)
    for region, written in sorted(regions, key=lambda rs: rs[0] == whole):  # the tiles before the whole photo
        if (why := aspect_problem(written)) is None:
            continue
        if region != whole or len(regions) == 1:  # a thin photo cut across its thin side
            return f"a tile of it would be {why}; choose a --grid that cuts along its long side"
        # Its tiles fit a frame, and only --tiles-only writes them: the grid advice sent a user who had cut along
        # the long side back to the same error.
        return f"the whole photo, which --whole keeps beside its tiles, is {why}; pass --tiles-only to write its tiles alone"
    region, (w, h) = max(cut(size, spec), key=lambda rs: rs[1][0] * rs[1][1])
    if w * h <= pixel_bound():
        return None
    # Building such a tile takes gigabytes and minutes, and at twice the bound Pillow refuses to read it back.
    return (f"its {region[2] - region[0]}x{region[3] - region[1]} tiles would be written {w}x{h} at --zoom {spec.zoom:g}, "
            f"past the {pixel_bound()} pixels Pillow reads without a decompression-bomb warning; lower --zoom "
            "or cut a finer --grid")


def _shown(tile: ImageRecord) -> ImageRecord:
    """`tile` without the boxes its magnification left under a pixel a side, which `data check` refuses: a tile
    shrunk at --zoom 0.25 wrote a 2.4-px part 0.6 px wide, and the dataset tile wrote failed the next command."""
    return tile.model_copy(update={"objects": [o for o in tile.objects if not box_is_degenerate(o.bbox_2d)]})


def tile_record(record: ImageRecord, photo: Path, out: Path, name: str, spec: TileSpec,
                written: dict[str, str] | None = None, origin: str | None = None,
                dropped: list[dict[str, Any]] | None = None) -> list[ImageRecord]:
    """The record's tiles (and itself, when `spec.whole`) written under `out/images/`, paths relative to `out`, their
    ids `origin` (default: the record's id, else `name`) and the region.

    A tile whose bytes are already in `written` (digest -> the tile written with them; a flat background cut twice) is
    skipped: the same photo twice in one dataset is an error for `bbuvl data check`. One that holds boxes is added to
    `dropped` (its name, the twin's, its boxes), for the caller to say what was lost with it.
    """
    origin = origin or record.id or name
    written = {} if written is None else written
    loaded = load_image(photo)  # a JPEG past Pillow's limit decodes smaller: its regions are cut in the stored frame
    if loaded.size != record.size:
        raise ValueError(f"{photo}: the photo is {loaded.size[0]}x{loaded.size[1]} but its record says "
                         f"{record.width}x{record.height}: boxes would land in the wrong place")
    suffix = ".jpg" if photo.suffix.lower() in (".jpg", ".jpeg") else ".png"
    whole_region = (0, 0, *record.size)
    tiles = []
    for region, size in cut(record.size, spec):
        x1, y1, x2, y2 = region
        rw, rh = x2 - x1, y2 - y1
        # The whole photo keeps its record's boxes as they are: through the visibility rule, one of two near-duplicates
        # was dropped, and the photo taught "nothing here" over it.
        tile = record if region == whole_region else _shown(magnified_record(record, region, size))
        rel = f"{IMAGES}/{name}__{x1}_{y1}_{rw}x{rh}{suffix}"
        if not tile.objects and region != whole_region and not spec.keeps_empty(rel):
            continue
        crop = loaded.region(region, size)
        data = _encoded(crop, suffix)
        digest = hashlib.sha256(data).hexdigest()
        if digest in written:
            if tile.objects and dropped is not None:
                dropped.append({"tile": rel, "same_as": written[digest], "boxes": len(tile.objects)})
            continue
        written[digest] = rel
        write_bytes_atomic(out / rel, data)
        # The id's `@x,y,wxh` is how `data split` keeps a photo's tiles on one side (schema.tile_origin).
        tiles.append(tile.model_copy(update={"images": [rel], "id": f"{origin}@{x1},{y1},{rw}x{rh}",
                                             "source": record.image,
                                             "magnified": None if tile.magnified == 1.0 else tile.magnified}))
    return tiles


Sources = dict[str, list[tuple[Path, int, ImageRecord]]]


def tile_sources(dataset: str | Path, out: str | Path, notes: list[str] | None = None) -> Sources:
    """The records to tile, by split, each with the file and line it was read from; raises DatasetError for a bad line
    or a photo in the `out/images` that tiling rewrites (a dataset tiled into its own folder). `notes` gets a sentence
    for what tiling leaves out: the teacher lists of `{"student", "teachers"}` lines."""
    dataset, images = Path(dataset), real_path(Path(out) / IMAGES)
    sources = {"train": dataset / TRAIN, "val": dataset / VAL} if dataset.is_dir() else {"train": dataset}
    missing = [str(p) for p in sources.values() if file_kind(p) == "no such file"]  # reading names any other kind
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such dataset file{missing_file_hint(dataset, Path(missing[0]).name)}")
    parts: Sources = {}
    for split, path in sources.items():
        lines = read_lines(path)
        rows = [(path, line, sample.student) for line, sample in lines]
        if notes is not None and (taught := [line for line, sample in lines if sample.teachers]):
            # Tiles are cut from the students alone; the lists were dropped without a word
            notes.append(f"{path}: {len(taught)} line(s) give teacher photos of their own (the first, line {taught[0]}): "
                         "tiles are cut from the student photos alone, so those lists are left out; the tiled "
                         "dataset's teachers.jsonl is drawn from its own tiles (--teachers)")
        for _, line, record in rows:
            if real_path(resolve_image(path, record.image)).is_relative_to(images):
                raise DatasetError(path, line, f"its photo {record.image} lies in {Path(out) / IMAGES}, the folder "
                                   "the tiles are written into; choose another OUT")
            # A box outside its photo or of no area, which training refuses, was cut into tiles that hold a piece
            # of it each: the mistake (a box of another frame) was hidden, or named in the tiled dataset's files
            if (why := next((m for m, severity in check_boxes(record) if severity == "error"), None)) is not None:
                raise DatasetError(path, line, f"{why} (bbuvl data check lists every such box)")
        # An empty val is a dataset split with --val-ratio 0 (data check only warns of it): it tiles into an empty val.
        parts[split] = require_photos(rows, path) if split == "train" else rows
    # A photo on two lines was tiled once and its other line dropped without a word (its tiles' bytes were written
    # already); across train and val, its val copy vanished while `data check` calls it a leak.
    one_line_per_photo((row for rows in parts.values() for row in rows), by_content=True)
    return parts


def tile_dataset(dataset: str | Path, out: str | Path, spec: TileSpec, num_teachers: int = 10,
                 progress: Callable[[int, int], None] | None = None, sources: Sources | None = None) -> dict:
    """Tile a dataset folder's train and val photos (or one JSONL, as train) into a new dataset folder at `out`
    (`sources`: what `tile_sources` read already).

    Refused (OutputConflict) before anything is written when a file it writes, or `out`/images, is `dataset`, holds
    it or lies inside it (a dataset folder tiled into itself), or another process writes or reads one
    (data/library_outputs.py)."""
    dataset, out = Path(dataset), Path(out)
    with holding_outputs("data tile", {"dataset": dataset}, [out / name for name in DATASET_FILES], [out / IMAGES]):
        return _tile_held(dataset, out, spec, num_teachers, progress, sources)


def _tile_held(dataset: Path, out: Path, spec: TileSpec, num_teachers: int,
               progress: Callable[[int, int], None] | None, sources: Sources | None) -> dict:
    """`tile_dataset`, its outputs held."""
    parts = tile_sources(dataset, out) if sources is None else sources
    for rows in parts.values():  # before any photo is written: one photo too large refuses the run
        for path, line, record in rows:
            if (why := too_large(record.size, spec)) is not None:
                raise DatasetError(path, line, f"image {record.image}: {why}")
    total, done = sum(len(v) for v in parts.values()), 0
    tiled: dict[str, list[ImageRecord]] = {"train": [], "val": []}
    written: dict[str, str] = {}
    dropped: list[dict[str, Any]] = []
    # The id is how split, check and training tell one photo's tiles (schema.tile_origin): an id two photos share (two
    # sites' IMG_0001 in one merged file) made them one photo, whose tiles in train and val check called a leak.
    ids = Counter(record.id for rows in parts.values() for _, _, record in rows)
    names = NameBook()  # `a.jpg` and `a.jpeg`, `A.jpg` and `a.jpg`, `../x.jpg` and `up/x.jpg`: one stem, never one tile
    for split, rows in parts.items():
        for path, line, record in rows:
            stem = safe_stem(record.image).removeprefix(f"{IMAGES}/")
            photo = resolve_image(path, record.image)
            name = names.name(fit_name(portable_path(f"{split}/{stem}"), f"{split}:{photo}"), f"{split}:{photo}")
            try:
                origin = record.id if record.id and ids[record.id] == 1 else name
                tiled[split] += tile_record(record, photo, out, name, spec, written, origin, dropped)
            except ValueError as e:  # ImageError, or a size its record contradicts: named as `data check` names it
                raise DatasetError(path, line, f"image {record.image}: {str(e).removeprefix(f'{photo}: ')}") from None
            done += 1
            if progress:
                progress(done, total)
    if not tiled["train"]:  # an empty training file written with exit 0 reads as success
        raise ValueError(f"{parts['train'][0][0]}: none of its {len(parts['train'])} photos gave a tile to keep: without "
                         f"--whole only tiles with an object in them, and a share --empty {spec.empty:g} of the others, "
                         "are kept")
    about = {"tiles": {"grid": list(spec.grid), "overlap": spec.overlap, "zoom": spec.zoom, "whole": spec.whole,
                       "empty": spec.empty, "from": str(dataset), "copies_with_boxes_left_out": dropped}}
    return write_dataset_folder(out, tiled["train"], tiled["val"], num_teachers=num_teachers, seed=spec.seed, summary=about)
