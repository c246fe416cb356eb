"""Metrics are scikit-learn's on the same labels; fall-out and per-class counts on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
)

from bbuvl.fewshot.metrics import classification_metrics, confusion, fallout, per_class
from bbuvl.fewshot.support import UNKNOWN

CLASSES = ["bbu基带处理单元/华为", "标签贴纸", "线缆", "挡风板/已安装"]


@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_scikit_learn_on_the_same_string_labels(seed):
    rng = np.random.default_rng(seed)
    pool = CLASSES + [UNKNOWN]
    truth = [pool[i] for i in rng.integers(0, len(pool), 60)]
    pred = [t if rng.random() < 0.6 else pool[i] for t, i in zip(truth, rng.integers(0, len(pool), 60))]
    pred[0] = "a class never true"  # labels outside the truth must be handled as scikit-learn does
    m = classification_metrics(truth, pred)
    assert m["accuracy"] == pytest.approx(accuracy_score(truth, pred), abs=1e-12)
    with pytest.warns(UserWarning):
        expected_balanced = balanced_accuracy_score(truth, pred)
    assert m["balanced_accuracy"] == pytest.approx(expected_balanced, abs=1e-12)
    assert m["macro_precision"] == pytest.approx(precision_score(truth, pred, average="macro", zero_division=0), abs=1e-12)
    assert m["macro_recall"] == pytest.approx(recall_score(truth, pred, average="macro", zero_division=0), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro", zero_division=0), abs=1e-12)
    assert m["mcc"] == pytest.approx(matthews_corrcoef(truth, pred), abs=1e-12)


def test_fallout_is_the_share_of_unknown_truth_queries_accepted_as_a_class():
    truth = ["a", "a", UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, "b"]
    pred = ["a", UNKNOWN, "a", UNKNOWN, "b", UNKNOWN, UNKNOWN]
    # Unknown-truth queries: 4; accepted as some class: 2 ("a" and "b"). Known queries rejected do not count.
    assert fallout(truth, pred) == pytest.approx(0.5)
    assert classification_metrics(truth, pred)["fallout"] == pytest.approx(0.5)
    assert fallout(["a", "b"], [UNKNOWN, "a"]) is None
    assert fallout([UNKNOWN] * 3, [UNKNOWN] * 3) == 0.0


def test_confusion_has_unknown_as_row_and_column_in_the_given_order():
    labels = ["a", "b", UNKNOWN]
    truth = ["a", "a", "b", UNKNOWN, UNKNOWN]
    pred = ["a", UNKNOWN, "b", "a", UNKNOWN]
    cm = confusion(truth, pred, labels)
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    np.testing.assert_array_equal(cm, confusion_matrix(truth, pred, labels=labels))
    with pytest.raises(ValueError, match="not in the list"):
        confusion(["z"], ["a"], labels)


def test_per_class_counts_and_scores():
    labels = ["a", "b", UNKNOWN]
    truth = ["a", "a", "b", UNKNOWN, UNKNOWN]
    pred = ["a", UNKNOWN, "b", "a", UNKNOWN]
    rows = {r["class"]: r for r in per_class(truth, pred, labels)}
    assert rows["a"] == {"class": "a", "true": 2, "predicted": 2, "tp": 1, "fp": 1, "fn": 1,
                         "precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert (rows["b"]["precision"], rows["b"]["recall"]) == (1.0, 1.0)
    assert (rows[UNKNOWN]["true"], rows[UNKNOWN]["predicted"], rows[UNKNOWN]["tp"]) == (2, 2, 1)


def test_empty_input_gives_no_numbers_and_mismatch_is_refused():
    assert all(v is None for v in classification_metrics([], []).values())
    with pytest.raises(ValueError, match="2 true labels but 1"):
        classification_metrics(["a", "b"], ["a"])
