"""The Unknown threshold at its edges: --threshold 1 accepts a photo identical to its class's support photo (the file
writes its score as 1.0), in classify and in eval; a margin of exactly 0.2 is medium, as the rule says."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from bbuvl.fewshot.classifier import FewShotClassifier, decide
from tests.fewshot.test_hostile_input import invoke, photos


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_threshold_one_accepts_a_query_identical_to_its_class_support_photo(tmp_path):
    support = photos(tmp_path / "support", {"a": 1, "b": 1, "c": 1})
    common = ("--support", support, "--query", support, "--backbone", "pixels:8", "--no-cache", "--threshold", "1")
    code, said = invoke("classify", *common, "--out", tmp_path / "r.csv")
    assert code == 0, said
    rows = list(csv.DictReader((tmp_path / "r.csv").open(encoding="utf-8")))
    # Each scored 0.99999994 in float32 for its own class: written 1.0, answered Unknown.
    assert [(r["truth"], r["score"], r["label"]) for r in rows] == [("a", "1.0", "a"), ("b", "1.0", "b"), ("c", "1.0", "c")]

    code, said = invoke("eval", "--support", support, "--query", support, "--backbone", "pixels:8", "--no-cache",
                        "--shots", "all", "--thresholds", "1", "--out", tmp_path / "ev")
    assert code == 0, said
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text(encoding="utf-8"))
    assert summary["best"]["all"]["accuracy"] == 1.0, summary["best"]


def test_a_score_written_as_the_threshold_is_accepted_and_a_margin_of_0_2_is_medium():
    # Support whose cosines to the query are 0.6 and 0.4: in float32 their margin was 0.20000002, high.
    support = np.array([[0.6, 0.8, 0.0], [0.4, 0.0, np.sqrt(0.84)]], dtype=np.float32)
    clf = FewShotClassifier.fit(["a", "b"], support)
    d = decide(clf.scores(np.array([[1.0, 0.0, 0.0]], dtype=np.float32)), 0.6)
    assert d.labels(clf.classes) == ["a"] and d.confidence() == ["medium"], (d.best_score, d.margin)
