"""Samples kept between epochs (`data.cache_mb`): the same sample back, only where nothing in it depends on the epoch."""

from __future__ import annotations

import torch

from bbuvl.config import CropConfig
from bbuvl.data.schema import read_dataset
from bbuvl.train.dataset import ConversationDataset, sample_bytes, sources_from
from tests.train.test_random_crops import contract, encoder, photo_jsonl  # noqa: F401 - fixtures


def dataset(path, encoder, contract, cache_mb: int, **kw) -> ConversationDataset:  # noqa: F811 - fixtures by name
    return ConversationDataset(sources_from(read_dataset(path), path) * 3, encoder, contract, cache_mb=cache_mb, **kw)


def _same(a, b) -> bool:
    return all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("input_ids", "labels", "pixel_values", "det_boxes"))


def test_a_kept_sample_is_the_one_encoded_and_the_budget_bounds_how_many(photo_jsonl, encoder, contract):  # noqa: F811
    plain, kept = dataset(photo_jsonl, encoder, contract, 0), dataset(photo_jsonl, encoder, contract, 64)
    for epoch in range(2):
        kept.set_epoch(epoch)
        for i in range(len(kept)):
            assert _same(kept[i], plain[i])
    assert len(kept._cache) == 3 and len(plain._cache) == 0
    one = sample_bytes(plain[0])
    assert one > 448 * 336 * 3  # the processed pixels, float32, are most of it
    mb = one // 2**20 + 1
    assert 2 * one > mb * 2**20  # room for one sample: the first is kept, the others are encoded each time
    tight = dataset(photo_jsonl, encoder, contract, mb)
    for i in range(3):
        tight[i]
    assert list(tight._cache) == [0] and _same(tight[2], plain[2])


def test_nothing_is_kept_where_a_sample_changes_with_the_epoch(photo_jsonl, encoder, contract):  # noqa: F811
    cropped = dataset(photo_jsonl, encoder, contract, 64, crop=CropConfig(p=1.0))
    teachers = sources_from(read_dataset(photo_jsonl), photo_jsonl)[0].student
    taught = dataset(photo_jsonl, encoder, contract, 64, teacher_pool=[teachers], teacher_ratio=0.5)
    for ds in (cropped, taught):
        for i in range(len(ds)):
            ds[i]
        assert ds._cache == {}
