"""The embedding cache keys each vector by the kind of device that made it: a GPU's convolutions run in TF32, so its
vectors differ from the CPU's in the last digits, and one cache filled on either was served on the other. Keys
written before the device was in them miss, and their crops are embedded again (docs/gpu.md)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from bbuvl.fewshot.backbones import PixelBackbone, load_backbone
from bbuvl.fewshot.cache import EmbeddingCache, device_kind, entry_key
from bbuvl.fewshot.embed import EmbedReport, ImageItem, embed_items
from bbuvl.tiny.backbones import tiny_backbone
from tests.fewshot.test_cache import write_photos


def _embedded(items, backbone, cache) -> tuple[np.ndarray, EmbedReport]:
    report = EmbedReport()
    vectors = [v for _, v in embed_items(items, backbone, cache, batch_size=3, report=report)]
    return np.concatenate(vectors), report


def test_the_key_names_the_kind_of_device_not_its_index():
    key = {d: entry_key("resnet:a", "d1", (1, 2, 3, 4), 0.1, device_kind(d))
           for d in ("cpu", torch.device("cpu"), "cuda", "cuda:0", torch.device("cuda", 1), None)}
    assert key["cpu"] == key[torch.device("cpu")] == key[None]
    assert key["cuda"] == key["cuda:0"] == key[torch.device("cuda", 1)]
    assert key["cpu"] != key["cuda"]


def test_a_cache_keyed_on_another_device_or_before_devices_is_embedded_again_on_the_cpu(tmp_path):
    photos = write_photos(tmp_path / "photos", 4)
    items = [ImageItem(p, (5, 5, 35, 30), margin=0.1) for p in photos]
    backbone = load_backbone(str(tiny_backbone("resnet", tmp_path / "resnet", image_size=32, seed=0)), "cpu")
    fresh, _ = _embedded(items, backbone, None)
    cache = EmbeddingCache(tmp_path / "cache")
    # Entries as a GPU would leave them, and as every run left them before the device was in the key: vectors that
    # are not the CPU's, which the CPU must not be served.
    stale = np.full((len(items), backbone.dim), 7.0, dtype=np.float32)
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in photos]
    on_gpu = [entry_key(backbone.key, d, i.box, i.margin, "cuda") for d, i in zip(digests, items)]
    crop = [",".join(f"{v:.3f}" for v in i.box) + f"|m={i.margin:.4f}" for i in items]
    before = [hashlib.sha256(f"{backbone.key}|{d}|{c}".encode()).hexdigest() for d, c in zip(digests, crop)]
    cache.put_many(on_gpu + before, np.concatenate([stale, stale]))
    vectors, report = _embedded(items, backbone, cache)
    assert (report.cached, report.embedded) == (0, 4)
    np.testing.assert_array_equal(vectors, fresh)
    again, report = _embedded(items, backbone, cache)  # the CPU's own entries are served to the CPU
    assert (report.cached, report.embedded) == (4, 0)
    np.testing.assert_array_equal(again, fresh)
    assert len(cache) == 12  # the others stay in the file, unread
    cache.close()


def test_the_pixel_baseline_is_keyed_as_the_cpu(tmp_path):
    photo, = write_photos(tmp_path / "photos", 1)
    cache = EmbeddingCache(tmp_path / "cache")
    _embedded([ImageItem(photo)], PixelBackbone(4), cache)
    key = entry_key(PixelBackbone(4).key, hashlib.sha256(photo.read_bytes()).hexdigest(), None, 0.0, "cpu")
    assert list(cache.get_many([key])) == [key]
    cache.close()
