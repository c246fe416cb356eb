"""A hierarchy that marks none of the checkpoint's labels a fault (another project's, or one with no fault at all) let
every photo pass whatever was found, and predict said only "verdicts: N pass". Given with --hierarchy it is refused
before the model loads, naming the file; the one a run config names is said in a note, as predict and serve print."""

from __future__ import annotations

import json

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")

OTHER = {"categories": {"cat": {"gloss": "a cat", "attributes": {"coat": {"gloss": "its coat", "states": {
    "clean": {"gloss": "clean"}, "muddy": {"gloss": "muddy", "fault": True}}}}}}}
NONE = {"categories": {"cat": {"gloss": "a cat"}}}


@pytest.mark.parametrize("hierarchy, says", [(OTHER, "it marks cat/coat/muddy"), (NONE, "it marks no fault at all")])
def test_a_hierarchy_marking_none_of_the_labels_a_fault_is_refused_naming_it(trained_checkpoint, small_dataset,
                                                                             tmp_path, hierarchy, says):
    path = tmp_path / "hierarchy.json"
    path.write_text(json.dumps(hierarchy), encoding="utf-8")
    out = tmp_path / "p.jsonl"
    refused(invoke(["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "-o", out, "--mode", "head",
                    "--device", "cpu", "--hierarchy", path]),
            f"--hierarchy {path}: the hierarchy marks none of the checkpoint's", says,
            "every photo's verdict would be pass", "leave --hierarchy out")
    assert not out.exists()


def test_the_predictor_notes_a_hierarchy_that_judges_none_of_its_labels(trained_checkpoint, tmp_path):
    from bbuvl.data.faults import Faults
    from bbuvl.infer.predictor import Predictor

    predictor = Predictor.load(trained_checkpoint, device="cpu")
    assert not any("every photo's verdict would be pass" in n for n in predictor.threshold_notes("head"))
    path = tmp_path / "hierarchy.json"
    path.write_text(json.dumps(OTHER), encoding="utf-8")
    predictor.faults = Faults.load(path)
    assert any("marks none of the checkpoint's" in n and "every photo's verdict would be pass" in n
               for n in predictor.threshold_notes("head"))
