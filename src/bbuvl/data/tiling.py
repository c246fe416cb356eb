"""`bbuvl data tile`: cut every photo of a dataset into the tile grid inference will use, as a dataset to inspect or train on.

A model that predicts on tiles should have trained at the tiles' scale: a tile of a wide photo, resized to the
checkpoint's frame, shows its screws several times larger than the whole photo does. Each tile is written as
its own photo (the stored pixels of the region, not resized: the training frame resizes it as it would at
inference) with the boxes that the visibility rule of `bbuvl.data.regions` keeps. With `whole=True` the
whole photo is kept beside its tiles, so the model also learns the one-pass scale (docs/tiles.md).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Callable

from PIL import Image

from bbuvl.atomic import write_bytes_atomic
from bbuvl.data.images import load_image
from bbuvl.data.layout import TRAIN, VAL, write_dataset_folder
from bbuvl.data.regions import grid_regions, tile_side_overlap, window_objects
from bbuvl.data.schema import ImageRecord, read_records, require_photos, resolve_image

IMAGES = "images"


def _encoded(image: Image.Image, suffix: str) -> bytes:
    buf = io.BytesIO()
    if suffix in (".jpg", ".jpeg"):
        image.save(buf, "JPEG", quality=95)
    else:
        image.save(buf, "PNG")
    return buf.getvalue()


def tile_record(record: ImageRecord, photo: Path, out: Path, name: str, grid: tuple[int, int], overlap: float,
                whole: bool, written: set[str] | None = None) -> list[ImageRecord]:
    """The record's tiles (and itself, when `whole`) written under `out/images/`, paths relative to `out`.

    A tile whose bytes are already in `written` (digests; a flat background cut twice) is skipped: the same photo
    twice in one dataset is an error for `bbuvl data check`, and teaches nothing new.
    """
    written = set() if written is None else written
    loaded = load_image(photo)
    if loaded.image.size != record.size:
        raise ValueError(f"{photo}: the photo is {loaded.image.size[0]}x{loaded.image.size[1]} but its record says "
                         f"{record.width}x{record.height}: boxes would land in the wrong place")
    suffix = ".jpg" if photo.suffix.lower() in (".jpg", ".jpeg") else ".png"
    objects = [(o.bbox_2d, o.desc) for o in record.objects]
    regions = grid_regions(record.size, *grid, overlap=tile_side_overlap(record.size, grid, overlap))
    if whole and regions != [(0, 0, *record.size)]:
        regions = [(0, 0, *record.size), *regions]
    tiles = []
    for x1, y1, x2, y2 in regions:
        rel = f"{IMAGES}/{name}__{x1}_{y1}_{x2 - x1}x{y2 - y1}{suffix}"
        data = _encoded(loaded.image.crop((x1, y1, x2, y2)), suffix)
        digest = hashlib.sha256(data).hexdigest()
        if digest in written:
            continue
        written.add(digest)
        write_bytes_atomic(out / rel, data)
        tiles.append(ImageRecord(images=[rel], width=x2 - x1, height=y2 - y1,
                                 objects=window_objects(objects, (x1, y1), (x2 - x1, y2 - y1)),
                                 id=f"{record.id or name}@{x1},{y1},{x2 - x1}x{y2 - y1}", source=record.image))
    return tiles


def tile_dataset(dataset: str | Path, out: str | Path, grid: tuple[int, int], overlap: float = 0.15, whole: bool = True,
                 num_teachers: int = 10, seed: int = 42,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Tile a dataset folder's train and val photos (or one JSONL, as train) into a new dataset folder at `out`."""
    dataset, out = Path(dataset), Path(out)
    sources = {"train": dataset / TRAIN, "val": dataset / VAL} if dataset.is_dir() else {"train": dataset}
    missing = [str(p) for p in sources.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such dataset file")
    parts: dict[str, list[tuple[Path, ImageRecord]]] = {}
    for split, path in sources.items():
        parts[split] = [(path, r) for r in require_photos(read_records(path), path)]
    total, done = sum(len(v) for v in parts.values()), 0
    tiled: dict[str, list[ImageRecord]] = {"train": [], "val": []}
    written: set[str] = set()
    for split, rows in parts.items():
        for path, record in rows:
            stem = Path(record.image).with_suffix("").as_posix().replace("../", "up/").lstrip("/").removeprefix(f"{IMAGES}/")
            tiled[split] += tile_record(record, resolve_image(path, record.image), out, f"{split}/{stem}", grid, overlap,
                                        whole, written)
            done += 1
            if progress:
                progress(done, total)
    about = {"tiles": {"grid": list(grid), "overlap": overlap, "whole": whole, "from": str(dataset)}}
    return write_dataset_folder(out, tiled["train"], tiled["val"], num_teachers=num_teachers, seed=seed, summary=about)
