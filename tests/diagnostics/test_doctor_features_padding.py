"""`doctor features` summarises the tokens of the probe photos, never the padding a batch of photos of several sizes
adds: the same photos give the same statistics one at a time and together."""

from __future__ import annotations

import pytest
from PIL import Image

from bbuvl.data.schema import read_records, write_dataset
from bbuvl.diagnostics.features import feature_stats
from bbuvl.diagnostics.probe import encode_rows, probe_rows


@pytest.fixture()
def two_sizes(small_dataset, tmp_path):
    """Two photos of the small dataset, the second at twice its size (four times its vision tokens)."""
    first, second = read_records(small_dataset / "train.jsonl")[:2]
    Image.open(small_dataset / first.image).save(tmp_path / "small.jpg", quality=92)
    Image.open(small_dataset / second.image).resize((2 * second.width, 2 * second.height)).save(tmp_path / "big.jpg", quality=92)
    records = [first.model_copy(update={"images": ["small.jpg"]}),
               second.model_copy(update={"images": ["big.jpg"], "width": 2 * second.width, "height": 2 * second.height,
                                         "objects": [o.model_copy(update={"bbox_2d": [2 * v for v in o.bbox_2d]})
                                                     for o in second.objects]})]
    write_dataset(tmp_path / "two.jsonl", records)
    return tmp_path / "two.jsonl"


def test_padded_vision_tokens_do_not_count_in_the_adapters_statistics(predictor, two_sizes):
    rows = probe_rows(two_sizes, 2)
    alone = {s.name: s for s in feature_stats(predictor.model, encode_rows(predictor, rows, 1).batches)}
    together = {s.name: s for s in feature_stats(predictor.model, encode_rows(predictor, rows, 2).batches)}
    assert alone.keys() == together.keys()
    for name, s in alone.items():
        t = together[name]
        # with the small photo padded to the big one's 192 tokens, 144 padded rows moved vision_adapter's mean and std
        assert (t.mean, t.std, t.min, t.max, t.dead) == pytest.approx((s.mean, s.std, s.min, s.max, s.dead), abs=1e-5), name
