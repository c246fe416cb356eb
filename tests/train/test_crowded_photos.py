"""A training photo holding more objects than detection.num_queries is named at start-up with what the head misses."""

from __future__ import annotations

import json
import logging

from PIL import Image

from bbuvl.train.run_inputs import read_run_inputs

SCREW = "螺丝连接点/CPRI光缆和BBU连接点/连接正确"


def photo(n: int, image: str) -> dict:
    """A 224x168 record of `n` distinct 6x10 boxes."""
    return {"images": [image], "width": 224, "height": 168,
            "objects": [{"bbox_2d": [4 + 8 * (i % 25), 4 + 14 * (i // 25), 10 + 8 * (i % 25), 14 + 14 * (i // 25)],
                         "desc": SCREW} for i in range(n)]}


def crowded_dataset(tmp_path, counts: list[int]):
    """A train.jsonl of one photo per count, each of that many objects."""
    lines = []
    for k, n in enumerate(counts):
        Image.new("RGB", (224, 168), (40 * k, 90, 120)).save(tmp_path / f"p{k}.png")
        lines.append(json.dumps(photo(n, f"p{k}.png"), ensure_ascii=False) + "\n")
    path = tmp_path / "train.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "num_queries" in r.getMessage()]


def test_photos_with_more_objects_than_queries_are_named_with_the_objects_the_head_misses(run_config, tmp_path, caplog):
    train = crowded_dataset(tmp_path, [2, 12, 8, 30])
    with caplog.at_level(logging.WARNING):
        read_run_inputs(run_config(f"data.train={train}", "data.val=null", "data.teachers=null",
                                   "detection.num_queries=8"))
    [note] = warnings(caplog)
    assert note.startswith("2 photo(s) of data.train hold more objects than detection.num_queries (8)")
    # 12 + 30 objects, 8 of each matched a draw: 4 + 22 are never a target of any query
    assert "at each draw of the whole photos 26 of their 42 objects are matched to no query" in note
    assert f"{train}:2: 12 objects; {train}:4: 30 objects." in note
    assert f"{train}:3" not in note  # 8 objects fill the 8 queries exactly
    assert "Raise detection.num_queries to at least 30" in note


def test_photos_the_queries_hold_or_a_run_without_the_head_say_nothing(run_config, tmp_path, caplog):
    train = crowded_dataset(tmp_path, [2, 12])
    with caplog.at_level(logging.WARNING):
        read_run_inputs(run_config(f"data.train={train}", "data.val=null", "data.teachers=null", "detection.num_queries=12"))
        read_run_inputs(run_config(f"data.train={train}", "data.val=null", "data.teachers=null", "detection.num_queries=8",
                                   "detection.enabled=false"))
    assert warnings(caplog) == []
