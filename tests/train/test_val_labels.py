"""A label data.val holds and no training photo does is named at the start of a run, with its objects and line."""

from __future__ import annotations

import json
import logging

from bbuvl.data.schema import read_records
from bbuvl.train.run_inputs import read_run_inputs

ANTENNA, GROUND_BAR = "天线", "地排"


def val_of(tmp_path, small_dataset, lines: list[list[str]]):
    """A data.val of one line per entry of `lines`, each a copy of a validation photo of the small dataset (so no
    photo is also a training one) holding those labels."""
    (tmp_path / "images").mkdir(exist_ok=True)
    source = read_records(small_dataset / "val.jsonl")
    out = []
    for k, labels in enumerate(lines):
        record = source[k % len(source)].model_dump(mode="json")
        copy = tmp_path / "images" / f"copy{k}.jpg"
        copy.write_bytes((small_dataset / record["images"][0]).read_bytes())
        box = record["objects"][0]["bbox_2d"]
        record.update(images=[f"images/{copy.name}"], objects=[
            {"bbox_2d": [box[0], box[1] + 2 * i, box[2], box[3]], "desc": label} for i, label in enumerate(labels)])
        out.append(json.dumps(record, ensure_ascii=False) + "\n")
    path = tmp_path / "val.jsonl"
    path.write_text("".join(out), encoding="utf-8")
    return path


def notes(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "no training photo has" in r.getMessage()]


def test_labels_only_validation_holds_are_named_with_their_objects_and_first_line(run_config, small_dataset, tmp_path,
                                                                                  caplog):
    trained = read_records(small_dataset / "train.jsonl")[0].objects[0].desc
    # the trained label typed with a full-width slash, which is the same label
    typed = trained.replace("/", "／")
    val = val_of(tmp_path, small_dataset, [[trained], [ANTENNA, trained], [GROUND_BAR, ANTENNA], [typed]])
    with caplog.at_level(logging.WARNING):
        read_run_inputs(run_config(f"data.val={val}"))
    # Before: nothing was said, and both labels went into the prompt beside the trained ones
    [note] = notes(caplog)
    assert note.startswith(f"data.val holds 2 label(s) no training photo has: '{ANTENNA}' (2 objects, first at {val}:2); "
                           f"'{GROUND_BAR}' (1 object, first at {val}:3).")
    assert "give data.train photos of them" in note


def test_validation_whose_labels_training_holds_says_nothing(run_config, small_dataset, tmp_path, caplog):
    trained = read_records(small_dataset / "train.jsonl")[0].objects[0].desc
    with caplog.at_level(logging.WARNING):
        read_run_inputs(run_config(f"data.val={val_of(tmp_path, small_dataset, [[trained], [trained]])}"))
    assert notes(caplog) == []


def test_a_label_holding_quotes_and_a_backslash_is_named_as_it_is_typed(run_config, small_dataset, tmp_path, caplog):
    # Named by Python's repr, `天线 "A"\B` read `'天线 "A"\\B'`, a label no file holds; and one holding `'` was quoted
    # otherwise than every other message quotes a label
    label = '天线 "A"\\B\'s'
    val = val_of(tmp_path, small_dataset, [[label]])
    with caplog.at_level(logging.WARNING):
        read_run_inputs(run_config(f"data.val={val}"))
    [note] = notes(caplog)
    assert note.startswith(f"data.val holds 1 label(s) no training photo has: '{label}' (1 object, first at {val}:1).")
