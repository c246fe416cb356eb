"""An embedding cache damaged past its first page (a disk error, a copy of a share) opens fine: the lookup that reaches
the damage is an error naming the file and what to do, never SQLite's traceback naming none, and nothing is written."""

from __future__ import annotations

import numpy as np

from bbuvl.fewshot.cache import CACHE_FILE, EmbeddingCache
from tests.fewshot.test_hostile_input import invoke, photos

PAGE = 4096  # SQLite's default page size: page 1 holds the header and the schema


def test_a_cache_damaged_past_its_first_page_is_an_error_naming_it_and_nothing_is_written(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    cache.put_many([f"{i:064x}" for i in range(200)], np.random.default_rng(0).random((200, 192)))
    cache.close()  # the last connection folds the WAL into the file
    database = tmp_path / "cache" / CACHE_FILE
    data = bytearray(database.read_bytes())
    assert len(data) > 4 * PAGE
    for page in range(PAGE, len(data), PAGE):
        data[page : page + 200] = b"\xff" * 200
    database.write_bytes(bytes(data))

    support = photos(tmp_path / "support", {"a": 2, "b": 2})
    code, said = invoke("classify", "--support", support, "--query", support, "--backbone", "pixels:8",
                        "--cache", tmp_path / "cache", "--out", tmp_path / "r.csv")
    assert code == 2 and f"{database}: cannot use the embedding cache (database disk image is malformed)" in said, said
    assert "--no-cache" in said and not (tmp_path / "r.csv").exists()
