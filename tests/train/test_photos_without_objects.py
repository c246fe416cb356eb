"""A training set none of whose photos holds an object is said at the start; photos without objects among others are
the negatives a detector needs, and say nothing."""

from __future__ import annotations

import logging

from bbuvl.data.schema import read_records, write_dataset
from bbuvl.train.run_inputs import read_run_inputs


def emptied(small_dataset, tmp_path, keep: int):
    """The small dataset's training photos (by absolute path), the objects of the first `keep` of them kept."""
    path = tmp_path / "train.jsonl"
    write_dataset(path, [r.model_copy(update={"images": [str(small_dataset / r.image)],
                                              "objects": r.objects if k < keep else []})
                         for k, r in enumerate(read_records(small_dataset / "train.jsonl"))])
    return path


def notes(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "holds an object" in r.getMessage()]


def test_a_training_set_without_any_object_is_said_with_what_it_teaches(run_config, small_dataset, tmp_path, caplog):
    # Before: it trained without a word (a conversion that lost every label), a model answering [] to every photo
    train = emptied(small_dataset, tmp_path, keep=0)
    with caplog.at_level(logging.WARNING):
        read_run_inputs(run_config(f"data.train={train}"))
    assert notes(caplog) == [f"data.train {train}: none of its 8 photo(s) holds an object, so the run teaches the model "
                             "to answer [] (nothing) for every photo and the head to find nothing; if they should hold "
                             f"objects, see what their conversion kept (`bbuvl data stats {train}`)"]


def test_photos_without_objects_beside_others_say_nothing(run_config, small_dataset, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        read_run_inputs(run_config(f"data.train={emptied(small_dataset, tmp_path, keep=1)}"))
    assert notes(caplog) == []
