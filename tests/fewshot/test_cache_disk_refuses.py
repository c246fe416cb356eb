"""The embedding cache only saves time: a write its disk refuses (full, a quota, a file-size limit) is said once and the
run goes on without storing vectors. A full cache disk (the default is ~/.cache) ended `fewshot classify` with "cannot
use the embedding cache (database or disk is full)", exit 2, nothing classified, although --out's disk had room.
The refusal here is real: `ulimit -f` (any user) and a full tmpfs (root only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bbuvl.cli.fewshot import app
from bbuvl.fewshot.cache import EmbeddingCache
from tests.reliability.faults import file_size_limit, small_tmpfs


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 256)).astype(np.float32)


def test_a_write_past_the_size_limit_is_said_once_and_the_cache_still_finds_what_it_held(tmp_path):
    said: list[str] = []
    cache = EmbeddingCache(tmp_path / "c", warn=said.append)
    cache.put_many(["a", "b"], vectors(2))
    held = sum(p.stat().st_size for p in (tmp_path / "c").iterdir())
    with file_size_limit(held + 4096):
        cache.put_many([f"k{i}" for i in range(200)], vectors(200, seed=1))  # 200 KB: refused, rolled back
        cache.put_many(["z"], vectors(1, seed=2))  # nothing more is tried
    assert len(said) == 1 and said[0].startswith(f"{tmp_path / 'c' / 'embeddings.sqlite'}: the embedding cache takes "
                                                 "no more vectors") and "--cache" in said[0], said
    assert cache.stopped == said[0] and cache.writes == 2
    assert set(cache.get_many(["a", "b", "k0", "z"])) == {"a", "b"} and len(cache) == 2
    cache.close()
    again = EmbeddingCache(tmp_path / "c")  # room again: the next run stores
    again.put_many(["z"], vectors(1, seed=2))
    assert again.stopped is None and len(again) == 3


def test_a_new_cache_on_a_disk_that_takes_nothing_is_said_and_stands_in_empty(tmp_path):
    said: list[str] = []
    with file_size_limit(512):  # less than the database's first page
        cache = EmbeddingCache(tmp_path / "c", warn=said.append)
        cache.put_many(["a"], vectors(1))
    assert len(said) == 1 and "takes no more vectors" in said[0] and cache.get_many(["a"]) == {} and len(cache) == 0


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_classify_with_its_cache_on_a_full_disk_classifies_every_query(part_crops, tmp_path):
    out = tmp_path / "pred.jsonl"
    with small_tmpfs(tmp_path / "disk", kib=64) as disk:
        r = CliRunner().invoke(app, ["classify", "--support", str(part_crops.support), "--query", str(part_crops.query),
                                     "--backbone", "pixels:8", "--out", str(out), "--cache", str(disk / "cache")])
    said = " ".join(r.output.split())
    assert r.exit_code == 0, said
    assert said.count("the embedding cache takes no more vectors (database or disk is full)") == 1, said
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == sum(1 for _ in part_crops.query.rglob("*.png"))
