"""Encoded training samples kept in memory between epochs, up to a byte budget (`data.sample_cache_mb`).

Decoding a photo, running the processor over it and tokenising its conversation is the same work every epoch when
nothing about the sample is drawn anew: on the demo's two processes it was 9% of a stage-A step and 6% of a stage-B
step (docs/design.md, "Samples kept between epochs"). A sample is stored under everything its encoding depends on
(its index and that epoch's draws: teachers, crop window, mirror), so a cached sample is the one `__getitem__` would
build, byte for byte. The least recently used samples leave first when the budget is full.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import fields

import torch

from bbuvl.encode.chat import EncodedSample


def sample_bytes(sample: EncodedSample) -> int:
    """Bytes held by a sample's tensors (the pixels, the ids and the targets; lists of tensors too)."""
    total = 0
    for f in fields(sample):
        value = getattr(sample, f.name)
        items = value if isinstance(value, list) else [value]
        total += sum(t.numel() * t.element_size() for t in items if isinstance(t, torch.Tensor))
    return total


class SampleCache:
    """A least-recently-used map from a sample's key to its encoding, holding at most `budget_bytes` of tensors."""

    def __init__(self, budget_bytes: int):
        if budget_bytes < 0:
            raise ValueError(f"a sample cache's budget is a number of bytes, 0 or more; got {budget_bytes}")
        self.budget = budget_bytes
        self.held = 0
        self.hits = self.misses = 0
        self._items: OrderedDict[Hashable, tuple[EncodedSample, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> EncodedSample | None:
        """The sample stored under `key` (now the most recently used), or None."""
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Hashable, sample: EncodedSample) -> None:
        """Store `sample` under `key`, dropping the least recently used ones to stay within the budget; a sample larger
        than the whole budget is not stored."""
        size = sample_bytes(sample)
        if size > self.budget:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.held -= old[1]
        while self._items and self.held + size > self.budget:
            _, (_, dropped) = self._items.popitem(last=False)
            self.held -= dropped
        self._items[key] = (sample, size)
        self.held += size
