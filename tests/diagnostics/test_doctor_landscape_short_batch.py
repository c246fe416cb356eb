"""`doctor landscape`'s loss of N photos weighs each batch by the photos it holds: a last short batch is not one
batch's worth of the mean (HF's eval_loss weighs its batches so)."""

from __future__ import annotations

import pytest

from bbuvl.diagnostics.probe import batch_loss, encode_rows, probe_rows


def test_a_short_last_batch_weighs_its_photos_not_a_whole_batch(predictor, small_dataset):
    batches = encode_rows(predictor, probe_rows(small_dataset / "train.jsonl", 4), 3).batches
    assert [int(b.input_ids.shape[0]) for b in batches] == [3, 1]
    three, one = batch_loss(predictor.model, batches[:1]), batch_loss(predictor.model, batches[1:])
    assert three != pytest.approx(one)
    # the lone fourth photo counted as much as the other three: (three + one) / 2
    assert batch_loss(predictor.model, batches) == pytest.approx((3 * three + one) / 4, rel=1e-6)
