"""`data check` and `data split` on a copy changed in tone (data/near_copies.py): a teacher that is its own student made
darker or greyscale is warned of, and every message says the levels were measured in luminance or matched in
brightness and contrast, not between the values as taken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bbuvl.data.check import check_dataset
from bbuvl.data.layout import TRAIN, VAL
from bbuvl.data.schema import DatasetError, write_dataset
from bbuvl.data.split import split_photos
from tests.data.test_near_copies_tone import room, with_changed_copy  # noqa: F401 - the room's photos, a fixture

COMPARED = {"made darker": "matched in brightness and contrast", "made greyscale": "in luminance"}


@pytest.mark.parametrize("change, how", [("brightness", "made darker"), ("greyscale", "made greyscale")])
def test_check_warns_of_a_teacher_that_is_its_student_changed_in_tone_naming_both(room, tmp_path, change, how):
    folder = tmp_path / "data"
    records, copy = with_changed_copy(room, folder, change, 0.8)
    lines = [{"teachers": [copy.model_dump(exclude_none=True)], "student": records[0].model_dump(exclude_none=True)},
             *[r.model_dump(exclude_none=True) for r in records[1:]]]
    (folder / TRAIN).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    own = [p for p in check_dataset(folder) if "its own prompt" in p.message]
    assert [(Path(p.file).name, p.line, p.severity) for p in own] == [(TRAIN, 1, "warning")]
    assert own[0].message.startswith(f"teachers[0]: image images/copy.jpg: its pixels are those of the student photo "
                                     f"{records[0].image} {how} (seen small and upright, {COMPARED[how]}, no value "
                                     "differs by more than ")


@pytest.mark.parametrize("change, how", [("brightness", "made darker"), ("greyscale", "made greyscale")])
def test_checks_warning_of_a_tone_copy_across_the_split_says_how_its_values_were_compared(room, tmp_path, change, how):
    folder = tmp_path / "data"
    records, copy = with_changed_copy(room, folder, change, 0.8)
    write_dataset(folder / TRAIN, records)
    write_dataset(folder / VAL, [copy])
    warned = [p for p in check_dataset(folder) if "its pixels are those of" in p.message]
    assert [(Path(p.file).name, p.line) for p in warned] == [(VAL, 1)]
    assert (f"image images/copy.jpg: its pixels are those of {records[0].image} {how} at {folder / TRAIN} line 1 (seen "
            f"small and upright, {COMPARED[how]}, no value differs by more than ") in warned[0].message


def test_check_says_nothing_was_matched_for_a_copy_saved_again_as_taken(room, tmp_path):
    folder = tmp_path / "data"
    records, copy = with_changed_copy(room, folder, "brightness", 1.0)  # JPEG 90 of the photo, its tone unchanged
    write_dataset(folder / TRAIN, records)
    write_dataset(folder / VAL, [copy])
    warned = [p.message for p in check_dataset(folder) if "its pixels are those of" in p.message]
    assert len(warned) == 1
    assert f"{records[0].image} at {folder / TRAIN} line 1 (seen small and upright, no value differs by" in warned[0]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_split_refusing_a_teacher_that_is_a_darker_copy_of_a_validation_photo_says_its_values_were_matched(room,
                                                                                                         tmp_path):
    folder = tmp_path / "data"
    records, copy = with_changed_copy(room, folder, "brightness", 0.8)
    # Every line but the first shows the first line's photo made darker as its teacher: whichever of them a seed draws
    # for training, with the first for validation, holds a validation photo's answer.
    lines = [records[0].model_dump(exclude_none=True)] + [
        {"teachers": [copy.model_dump(exclude_none=True)], "student": r.model_dump(exclude_none=True)}
        for r in records[1:]]
    (folder / "all.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    refused = []
    for seed in range(20):
        try:
            split_photos(folder / "all.jsonl", tmp_path / f"split{seed}", val_ratio=0.3, seed=seed, num_teachers=0)
        except DatasetError as e:
            refused.append(str(e))
    assert refused, "no seed drew the first line for validation"
    assert all("has the pixels of line 1's photo made darker (a near-copy: seen small and upright, matched in "
               "brightness and contrast, no value differs by more than " in message for message in refused), refused
