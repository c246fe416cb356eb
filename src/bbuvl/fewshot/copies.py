"""Queries that are support images: the same pixels, whether the same file or a crop of the photo a support crop was
cut from (`fewshot eval --query train.jsonl` against crops `write_crops` cut from train.jsonl). Each scores its own
class as a support image does, so an evaluation holding them reads higher than on new photos.

A query is a candidate when its embedding is a support image's (cosine at 1 to 6 decimals), and a copy only when
their pixels are equal: a backbone may put two different pictures at one point (a tiny random one does), and only the
few candidates are decoded again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from bbuvl.data.images import ImageError
from bbuvl.fewshot.classifier import SCORE_DECIMALS, normalize
from bbuvl.fewshot.embed import ImageItem, item_pixels

SAME = 1.0 - 10.0 ** -SCORE_DECIMALS


class SupportCopies:
    """Finds, batch by batch, the queries whose pixels are those of one of the support images embedded."""

    def __init__(self, paths: Sequence[Path], vectors: np.ndarray):
        """`vectors` `[S, D]`: the support images' at `paths`, one row each."""
        self.paths = list(paths)
        self.vectors = normalize(vectors)
        self._pixels: dict[Path, np.ndarray | None] = {}

    def _support(self, path: Path) -> np.ndarray | None:
        """A support image's pixels, read once (None when it cannot be read again)."""
        if path not in self._pixels:
            try:
                self._pixels[path] = np.asarray(item_pixels(ImageItem(path)))
            except (ImageError, OSError):
                self._pixels[path] = None
        return self._pixels[path]

    def find(self, items: Sequence[ImageItem], vectors: np.ndarray) -> list[tuple[str, Path]]:
        """Where each of `items` (embedded as `vectors`) that is a support image came from, and that image."""
        if not len(self.paths) or not len(items):
            return []
        sims = normalize(vectors) @ self.vectors.T
        found = []
        for i in np.flatnonzero(sims.max(axis=1) >= SAME):
            try:
                query = np.asarray(item_pixels(items[i]))
            except (ImageError, OSError):
                continue
            for s in np.flatnonzero(sims[i] >= SAME):
                support = self._support(self.paths[s])
                if support is not None and support.shape == query.shape and np.array_equal(support, query):
                    found.append((items[i].where, self.paths[s]))
                    break
        return found
