"""`doctor data` on a validation photo holding more objects than the head's queries says what is true of it: the head
finds at most that many there; no draw teaches it (validation photos are never trained on)."""

from __future__ import annotations

import shutil

import pytest

from bbuvl.config import load_config
from bbuvl.data.schema import read_records, write_dataset
from bbuvl.diagnostics.data_doctor import diagnose_data


def _crowd(path, line):
    records = read_records(path)
    box = records[line - 1].objects[0]
    records[line - 1] = records[line - 1].model_copy(update={"objects": [
        box.model_copy(update={"bbox_2d": [2 + 5 * i, 2, 6 + 5 * i, 9]}) for i in range(12)]})
    write_dataset(path, records)


@pytest.mark.parametrize("name", ["val.jsonl", "held_out.jsonl"])  # the layout's name, or the config's data.val
def test_a_crowded_validation_photo_is_not_said_to_be_taught(small_dataset, tmp_path, name):
    folder = tmp_path / "crowded"
    shutil.copytree(small_dataset, folder)
    val = folder / name
    if name != "val.jsonl":
        (folder / "val.jsonl").rename(val)
    _crowd(val, 1)
    _crowd(folder / "train.jsonl", 2)
    cfg = load_config(None, ["model.family=qwen2_5_vl", "detection.num_queries=10", f"data.train={folder / 'train.jsonl'}",
                             f"data.val={val}"])
    [on_val] = [p for p in diagnose_data(val, cfg).problems if "num_queries (10)" in p.message]
    assert (on_val.line, on_val.severity) == (1, "warning")
    assert "teaches" not in on_val.message  # said "each draw teaches the queries 10 of them and 2 to none"
    assert "finds at most 10" in on_val.message and "at least 2 of its objects missed" in on_val.message
    [on_train] = [p for p in diagnose_data(folder / "train.jsonl", cfg).problems if "num_queries (10)" in p.message]
    assert "each draw teaches the queries 10 of them and 2 to none" in on_train.message
