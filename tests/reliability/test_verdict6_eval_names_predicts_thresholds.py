"""An inspector predicts with `--verdict-review` / `--verdict-fail` (their own pair for this site), then evaluates the
file: eval judges by the checkpoint's thresholds, so its verdict counts differed from the ones the lines hold without
a word. It says which pair judged the lines and how to judge as they were (docs/faults.md, "The verdict")."""

from __future__ import annotations

import json

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke

pytestmark = pytest.mark.usefixtures("one_thread")


def evaluated(trained_checkpoint, small_dataset, tmp_path, *given: str) -> tuple[str, dict]:
    gt = small_dataset / "val.jsonl"
    pred, out = tmp_path / "p.jsonl", tmp_path / "m.json"
    r = invoke(["predict", "-c", trained_checkpoint, "-i", gt, "-o", pred, "--mode", "head", "--device", "cpu", *given])
    assert r.exit_code == 0, r.output
    r = invoke(["eval", "--pred", pred, "--gt", gt, "--out", out])
    assert r.exit_code == 0, r.output
    return " ".join(r.output.split()), json.loads(out.read_text(encoding="utf-8"))


def test_eval_names_the_thresholds_predicts_command_line_judged_the_lines_with(trained_checkpoint, small_dataset,
                                                                              tmp_path):
    said, metrics = evaluated(trained_checkpoint, small_dataset, tmp_path, "--verdict-review", "0.3",
                              "--verdict-fail", "0.4")
    assert "were judged at review ≥ 0.3, fail ≥ 0.4, given to predict as --verdict-review / --verdict-fail" in said
    assert "give eval --verdict-review 0.3 --verdict-fail 0.4 to judge as the lines were" in said
    assert metrics["faults"]["thresholds"] == {"review": 0.25, "fail": 0.5}  # the checkpoint's, as before


def test_eval_says_nothing_of_predicts_thresholds_when_predict_judged_by_the_checkpoints(trained_checkpoint,
                                                                                       small_dataset, tmp_path):
    said, _ = evaluated(trained_checkpoint, small_dataset, tmp_path)
    assert "given to predict" not in said
