"""Samples kept between epochs (`data.sample_cache_mb`): the same samples and the same training, less encoding."""

from __future__ import annotations

import pytest
import torch

from bbuvl.config import ConfigError, load_config
from bbuvl.encode.chat import EncodedSample
from bbuvl.train.sample_cache import SampleCache, sample_bytes
from bbuvl.train.trainer import build_run, cache_plan, make_trainer

pytestmark = pytest.mark.filterwarnings("ignore")


def _sample(floats: int) -> EncodedSample:
    ids = torch.zeros(4, dtype=torch.long)
    return EncodedSample(input_ids=ids, labels=ids, span_ids=ids, mm_token_type_ids=ids,
                         pixel_values=torch.zeros(floats), image_grid_thw=torch.zeros(1, 3, dtype=torch.long))


def _same(a: EncodedSample, b: EncodedSample) -> bool:
    tensors = ("input_ids", "labels", "span_ids", "mm_token_type_ids", "pixel_values", "image_grid_thw", "det_boxes",
               "coord_boxes")
    return (all(torch.equal(getattr(a, k), getattr(b, k)) for k in tensors) and a.meta == b.meta
            and len(a.det_caption_ids) == len(b.det_caption_ids)
            and all(torch.equal(x, y) for x, y in zip(a.det_caption_ids, b.det_caption_ids))
            and ((a.coord_marks is None and b.coord_marks is None) or torch.equal(a.coord_marks, b.coord_marks)))


def test_the_cache_drops_the_least_recently_used_samples_to_stay_within_its_budget():
    one = sample_bytes(_sample(100))
    assert one == 100 * 4 + 4 * 4 * 8 + 3 * 8 + 0  # the pixels, four id rows, the grid (empty boxes hold nothing)
    cache = SampleCache(3 * one)
    for k in "abc":
        cache.put(k, _sample(100))
    assert cache.get("a") is not None  # now the most recent: "b" is the oldest
    cache.put("d", _sample(100))
    assert cache.get("b") is None and all(cache.get(k) is not None for k in "acd")
    assert len(cache) == 3 and cache.held == 3 * one and (cache.hits, cache.misses) == (4, 1)
    cache.put("huge", _sample(1000))  # larger than the whole budget: not stored, nothing dropped for it
    assert cache.get("huge") is None and len(cache) == 3
    cache.put("a", _sample(100))  # stored again under its key: counted once
    assert cache.held == 3 * one
    with pytest.raises(ValueError, match="0 or more"):
        SampleCache(-1)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_every_draw_of_a_cached_dataset_is_the_sample_it_would_encode_anew(run_config):
    """Teachers, crops and mirrors drawn per epoch: the cache keys on all of them, so each epoch's samples are the
    uncached dataset's, byte for byte, and a draw seen before is not encoded again."""
    draws = ("data.teacher_ratio=0.5", "data.crop.p=0.5", "data.mirror=0.5")
    plain = build_run(run_config(*draws)).train_dataset
    cached = build_run(run_config(*draws, "data.sample_cache_mb=64")).train_dataset
    assert plain.cache is None and cached.cache is not None
    for epoch in range(4):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            assert _same(cached[i], plain[i]), (epoch, i)
    assert cached.cache.hits > 0 and cached.cache.misses < 4 * len(plain)
    for i in range(len(plain)):  # the same epoch again: every draw is held
        assert _same(cached[i], plain[i])
    assert cached.cache.hits >= len(plain)


# (4, 2), as the shipped configs accumulate, draws the same sixteen samples as (8, 1) and checks the same cache and
# weights: (8, 1) runs with the slow tests
@pytest.mark.parametrize("steps, accumulation", [pytest.param(8, 1, marks=pytest.mark.slow), (4, 2)])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_training_with_the_cache_ends_with_the_same_weights(run_config, tmp_path, steps, accumulation):
    """Sixteen draws of eight photos (eight steps of two, or four of two micro-batches of two, as the shipped configs
    accumulate): the second epoch is read from the cache, and the weights after it are those of the run that encoded
    every sample."""
    common = (f"training.max_steps={steps}", f"training.gradient_accumulation_steps={accumulation}",
              "data.teacher_ratio=0", "data.val=null", "monitor.enabled=false")
    weights = []
    for name, extra in (("plain", ()), ("cached", ("data.sample_cache_mb=256",))):
        run = build_run(run_config(*common, *extra, f"training.output_dir={tmp_path / name}"))
        make_trainer(run, progress=False).train()
        weights.append({n: p.detach().clone() for n, p in run.model.named_parameters()})
        if extra:
            cache = run.train_dataset.cache  # the second epoch is read from it
            assert (cache.hits, cache.misses) == (8, 8)
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])


def test_the_cache_with_loader_workers_is_refused_naming_both_keys():
    with pytest.raises(ConfigError, match=r"sample_cache_mb.*num_workers"):
        load_config(None, ["data.sample_cache_mb=100", "data.num_workers=2"])
    assert load_config(None, ["data.sample_cache_mb=100", "data.num_workers=0"]).data.sample_cache_mb == 100
    with pytest.raises(ConfigError):
        load_config(None, ["data.sample_cache_mb=-1", "data.num_workers=0"])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_plan_says_how_many_samples_the_budget_holds_and_whether_the_machine_can(run_config):
    """The estimate is the first sample's bytes per vision token over every photo: for photos of one size, what
    keeping them all takes, but for their answers' few tokens."""
    ds = build_run(run_config("data.teacher_ratio=0", "data.sample_cache_mb=64")).train_dataset
    need = ds.cache_need_bytes()
    assert len({s.student.record.size for s in ds.sources}) == 1  # the small dataset's photos share one size
    assert need == pytest.approx(sum(sample_bytes(ds[i]) for i in range(len(ds))), rel=0.001)
    mb = need / 2**20
    text, fits = cache_plan(ds, 64, 2, 1e6)
    assert fits and f"keeping all {len(ds)} training samples" in text
    text, fits = cache_plan(ds, mb / 2, 2, 1e6)
    assert fits and f"keeping about {len(ds) // 2} of {len(ds)}" in text
    text, fits = cache_plan(ds, 64, 4, 3 * mb)  # four processes keeping all of them need 4x, three are free
    assert not fits and "4 process(es)" in text and "lower data.sample_cache_mb" in text
