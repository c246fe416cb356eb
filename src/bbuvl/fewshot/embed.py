"""Streaming images and crops through a backbone, batch by batch, with the on-disk cache in front.

Only one batch of pixels is alive at a time and every batch leaves as a CPU numpy array, so memory stays
flat however many crops go through. A crop whose image is missing or corrupt is reported (naming the file
and where the crop came from) and skipped; every other crop is still embedded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from bbuvl.data.coords import clip_box, box_is_degenerate
from bbuvl.data.images import ImageError, LoadedImage, load_image, stored_crop
from bbuvl.data.input_paths import spelling_note, unspellable
from bbuvl.fewshot.backbones import Backbone
from bbuvl.fewshot.cache import DigestMemo, EmbeddingCache, device_kind, entry_key

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ImageItem:
    """One image or one crop of it to embed, with its label when known."""

    path: Path
    box: Box | None = None  # [x1, y1, x2, y2] in the upright (EXIF-applied) image's pixels; None = whole image
    margin: float = 0.0  # the crop grows by this fraction of the box's width/height on every side
    label: str | None = None  # class name (support) or ground truth (query); None when unknown
    origin: str = ""  # where it came from, for messages ("val.jsonl:12 objects[3]"); defaults to the path
    size: tuple[int, int] | None = None  # (width, height) its record or prediction line gives the photo: `box`'s frame

    @property
    def where(self) -> str:
        """How messages name this item."""
        return self.origin or str(self.path)


@dataclass
class EmbedReport:
    """What a stream did: vectors computed, vectors read from the cache, items skipped (with why)."""

    embedded: int = 0
    cached: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        """Items with a vector."""
        return self.embedded + self.cached


def crop_box(box: Sequence[float], margin: float, size: tuple[int, int]) -> list[float]:
    """`box` grown by `margin` x its width/height on each side, clipped to an image of `size` (w, h)."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return clip_box([x1 - dx, y1 - dy, x2 + dx, y2 + dy], size)


class _Photos:
    """Decodes photos, keeping only the last one: the crops of a photo arrive one after another."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._image: LoadedImage | str | None = None  # the photo, or why it cannot be read

    def crop(self, item: ImageItem) -> Image.Image:
        """The item's pixels as RGB (raises ImageError naming the file)."""
        if item.path != self._path:
            self._path, self._image = item.path, None
            try:
                self._image = load_image(item.path)
            except ImageError as e:
                self._image = str(e)  # the photo's other crops fail the same way without decoding it again
        loaded = self._image
        if isinstance(loaded, str):
            raise ImageError(loaded)
        # A JPEG past Pillow's limit decodes smaller: the record and its boxes are the stored photo's, `size`
        (w, h) = size = loaded.size
        if item.size is not None and tuple(item.size) != size:
            # A photo resized or replaced since it was labelled: its boxes would crop other parts, unsaid.
            raise ImageError(f"{item.path}: the record says {item.size[0]}x{item.size[1]}, the image is "
                             f"{w}x{h}: its boxes are not this image's (resized or replaced since)")
        if item.box is None:
            return loaded.image
        box = crop_box(item.box, item.margin, size)
        if box_is_degenerate(box):
            raise ImageError(f"{item.path}: box {list(item.box)} is empty inside the {w}x{h} image")
        return stored_crop(loaded.image, size, box)


def item_pixels(item: ImageItem) -> Image.Image:
    """The item's pixels as RGB, as they are embedded (raises ImageError naming the file)."""
    return _Photos().crop(item)


def _skipped(item: ImageItem, why: str) -> str:
    """A skip message: where the item came from (when that is not just its file), then the file and why."""
    return f"{item.origin}: {why}" if item.origin else why


def _batches(items: Iterable[ImageItem], size: int) -> Iterator[list[ImageItem]]:
    batch: list[ImageItem] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def embed_items(
    items: Iterable[ImageItem],
    backbone: Backbone,
    cache: EmbeddingCache | None = None,
    batch_size: int = 32,
    report: EmbedReport | None = None,
) -> Iterator[tuple[list[ImageItem], np.ndarray]]:
    """Yield `(items, vectors [len(items), D] float32)` per batch, in input order, unreadable items left out.

    Vectors come from the cache when present there; the rest are embedded and written to it.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    report = report if report is not None else EmbedReport()
    digest = DigestMemo()
    photos = _Photos()
    on = device_kind(getattr(backbone, "device", None))  # the raw-pixel baseline has none: numpy on the CPU
    for batch in _batches(items, batch_size):
        keyed: list[tuple[ImageItem, str]] = []
        for item in batch:
            try:
                keyed.append((item, entry_key(backbone.key, digest(item.path), item.box, item.margin, on)))
            except FileNotFoundError:
                report.skipped.append(_skipped(item, f"{item.path}: image file not found{spelling_note(item.path)}"))
            except OSError as e:
                report.skipped.append(_skipped(item, f"{item.path}: cannot read: {e.strerror or e}"))
            except UnicodeEncodeError:  # a name this locale cannot spell: a traceback out of the whole run
                report.skipped.append(_skipped(item, f"{item.path}: {unspellable(item.path)}"))
        found = cache.get_many([k for _, k in keyed], backbone.dim) if cache is not None and keyed else {}
        todo_items, todo_keys, pixels = [], [], []
        for item, key in keyed:
            if key in found:
                continue
            try:
                pixels.append(photos.crop(item))
            except ImageError as e:
                report.skipped.append(_skipped(item, str(e)))  # ImageError names the file
                continue
            todo_items.append(item)
            todo_keys.append(key)
        fresh: dict[str, np.ndarray] = {}
        if pixels:
            vectors = backbone.embed(pixels)
            del pixels
            fresh = dict(zip(todo_keys, vectors))
            if cache is not None:
                cache.put_many(todo_keys, vectors)
        out_items = [item for item, key in keyed if key in found or key in fresh]
        if not out_items:
            continue
        report.cached += sum(key in found for _, key in keyed)
        report.embedded += len(todo_keys)
        out = np.stack([found[key] if key in found else fresh[key] for item, key in keyed if key in found or key in fresh])
        yield out_items, out.astype(np.float32, copy=False)
