"""Side by side with a baseline: the fault numbers are compared too, and a baseline written before them shows none."""

import re

import pytest

from bbuvl.eval.compare import compare, read_metrics


def metrics(recall, accuracy):
    return {"AP": 0.5, "AP50": 0.7, "label_accuracy": {"full": 0.8}, "faults": {
        "objects": {"at_fail": {"recall": recall, "precision": 0.5, "AP": 0.4}},
        "photos": {"model": {"failed": {"accuracy": accuracy}, "roc_auc": None}}}}


def test_fault_rows_compare_recall_and_verdict_accuracy_and_leave_undefined_ones_empty():
    rows = {r["name"]: r for r in compare(metrics(0.75, 0.9), metrics(0.5, 0.95))}
    assert rows["fault recall (score >= fail)"]["delta"] == 0.25 and rows["fault recall (score >= fail)"]["better"]
    assert rows["photo verdict accuracy (fail)"]["better"] is False
    assert rows["photo fault score ROC AUC"]["delta"] is None and rows["fault AP"]["delta"] == 0.0


def test_a_baseline_from_before_the_fault_metrics_has_no_fault_numbers():
    old = {"AP": 0.4, "AP50": 0.6, "label_accuracy": {"full": 0.7}}
    rows = {r["name"]: r for r in compare(metrics(0.75, 0.9), old)}
    assert rows["fault recall (score >= fail)"] == {"name": "fault recall (score >= fail)", "baseline": None,
                                                    "value": 0.75, "delta": None, "better": None}


def test_a_predictions_file_given_as_baseline_says_what_baseline_takes(eval_files, tmp_path):
    # It said only "line 2: not valid JSON (Extra data at column 1)".
    with pytest.raises(ValueError, match=r"pred.jsonl: line 2: not valid JSON .*--baseline takes a METRICS.json"):
        read_metrics(eval_files.pred)


@pytest.mark.parametrize(("value", "shown"), [(float("nan"), "nan"), (float("inf"), "inf"), (True, "True"),
                                              ("0.9", "'0.9'")])
def test_a_baseline_holding_no_number_where_a_headline_number_belongs_is_refused_naming_it(tmp_path, value, shown):
    # NaN was compared as "+nan" (worse), Infinity as "-inf", and `true` as an AP of 1.0.
    import json

    path = tmp_path / "base.json"
    path.write_text(json.dumps({**metrics(0.5, 0.9), "AP75": value}), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"base.json: AP75 is {re.escape(shown)}, not a number: not a METRICS.json "
                                         r"written by `bbuvl eval`"):
        read_metrics(path)
    path.write_text(json.dumps({**metrics(0.5, 0.9), "faults": {"objects": {"at_fail": {"recall": value}}}}),
                    encoding="utf-8")
    with pytest.raises(ValueError, match=r"base.json: faults.objects.at_fail.recall is "):
        read_metrics(path)


def test_predictions_without_a_manifest_record_no_model_and_a_comparison_says_so_for_each_side(eval_files):
    from bbuvl.eval.compare import model_differences, predictions_record

    record = predictions_record(eval_files.pred)  # written by the test, not by `bbuvl predict`: no manifest beside it
    assert record == {"file": str(eval_files.pred), "checkpoint": None, "model": None, "mode": None, "tiles": None,
                      "software": None}
    lines = model_differences(record, {"settings": {"predictions": record}}, "base.json")
    assert lines == [f"against the baseline: {who} predictions ({eval_files.pred}) record no model: their file has no "
                     "manifest of `bbuvl predict`" for who in ("the baseline's", "these")]
