"""Embedding cache: keyed by file content + backbone + crop, so a second pass embeds nothing it has seen."""

from __future__ import annotations

import shutil

import numpy as np
from PIL import Image

from bbuvl.fewshot.backbones import PixelBackbone, load_backbone
from bbuvl.fewshot.cache import EmbeddingCache, entry_key
from bbuvl.fewshot.embed import EmbedReport, ImageItem, embed_items


def write_photos(folder, n: int) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (40, 50, 3), dtype=np.uint8)
        paths.append(folder / f"p{i}.png")
        Image.fromarray(arr).save(paths[-1])
    return paths


def run(items, backbone, cache) -> tuple[np.ndarray, EmbedReport]:
    report = EmbedReport()
    vectors = [v for _, v in embed_items(items, backbone, cache, batch_size=3, report=report)]
    return np.concatenate(vectors), report


def test_entry_key_depends_on_content_backbone_box_and_margin():
    base = entry_key("clip:a", "d1", (1, 2, 3, 4), 0.1)
    assert entry_key("clip:a", "d1", (1, 2, 3, 4), 0.1) == base
    assert len({base, entry_key("clip:b", "d1", (1, 2, 3, 4), 0.1), entry_key("clip:a", "d2", (1, 2, 3, 4), 0.1),
                entry_key("clip:a", "d1", (1, 2, 3, 5), 0.1), entry_key("clip:a", "d1", (1, 2, 3, 4), 0.2),
                entry_key("clip:a", "d1", None, 0.1)}) == 6


def test_an_entry_embedded_by_other_library_versions_is_missed_and_embedded_again(tmp_path):
    # After a torch or Pillow upgrade the support set came from the cache as the old libraries embedded it and the
    # queries as the new ones do: one result of two programs' vectors.
    from bbuvl.fewshot.cache import libraries

    assert "torch=" in libraries() and "pillow=" in libraries().lower()
    assert entry_key("clip:a", "d1", None, 0.1) == entry_key("clip:a", "d1", None, 0.1, by=libraries())
    assert entry_key("clip:a", "d1", None, 0.1, by="torch=2.11.0") != entry_key("clip:a", "d1", None, 0.1)
    paths = write_photos(tmp_path / "img", 2)
    backbone, cache = PixelBackbone(4), EmbeddingCache(tmp_path / "c")
    items = [ImageItem(p) for p in paths]
    import hashlib

    stale = {entry_key(backbone.key, hashlib.sha256(p.read_bytes()).hexdigest(), None, 0.0, "cpu", by="torch=0.0.1")
             for p in paths}
    cache.put_many(sorted(stale), np.full((2, backbone.dim), 7.0, dtype=np.float32))  # another program's vectors
    vectors, report = run(items, backbone, cache)
    assert report.cached == 0 and not np.any(vectors == 7.0)


def test_vectors_round_trip_through_the_database(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    vecs = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    cache.put_many(["a", "b", "c"], vecs)
    cache.close()
    again = EmbeddingCache(tmp_path / "c")
    got = again.get_many(["c", "missing", "a"])
    assert set(got) == {"a", "c"} and again.hits == 2
    np.testing.assert_array_equal(got["a"], vecs[0])
    assert len(again) == 3


def test_second_pass_embeds_nothing_and_returns_identical_vectors(tmp_path):
    paths = write_photos(tmp_path / "img", 7)
    items = [ImageItem(p) for p in paths] + [ImageItem(paths[0], box=(5, 5, 30, 25), margin=0.1)]
    cache = EmbeddingCache(tmp_path / "cache")
    bb = PixelBackbone(8)
    first, r1 = run(items, bb, cache)
    second, r2 = run(items, bb, cache)
    assert (r1.embedded, r1.cached) == (8, 0)
    assert (r2.embedded, r2.cached) == (0, 8)
    np.testing.assert_array_equal(first, second)


def test_moved_file_hits_edited_file_misses_other_backbone_misses(tmp_path, tiny_backbones):
    paths = write_photos(tmp_path / "img", 2)
    cache = EmbeddingCache(tmp_path / "cache")
    bb = PixelBackbone(8)
    run([ImageItem(p) for p in paths], bb, cache)
    moved = tmp_path / "elsewhere" / "renamed.png"
    moved.parent.mkdir()
    shutil.copy(paths[0], moved)
    assert run([ImageItem(moved)], bb, cache)[1].cached == 1
    Image.new("RGB", (50, 40), (1, 2, 3)).save(paths[1])  # same name, new pixels
    assert run([ImageItem(paths[1])], bb, cache)[1].embedded == 1
    assert run([ImageItem(paths[0])], PixelBackbone(9), cache)[1].embedded == 1
    clip = load_backbone(str(tiny_backbones["clip"]))
    vec, report = run([ImageItem(paths[0])], clip, cache)
    assert report.embedded == 1 and vec.shape == (1, clip.dim)


def test_a_cache_path_that_is_a_file_is_an_error_saying_what_to_do(tmp_path):
    (tmp_path / "cache").write_text("not a folder", encoding="utf-8")
    try:
        EmbeddingCache(tmp_path / "cache")
    except ValueError as e:  # "[Errno 17] File exists: ..." before
        assert str(e) == (f"{tmp_path / 'cache'}: cannot be the embedding cache folder (a file, not a folder); pick "
                          "another --cache, or pass --no-cache")
    else:
        raise AssertionError("a file was taken for a cache folder")
    assert (tmp_path / "cache").read_text(encoding="utf-8") == "not a folder"
