"""An inspector predicts with `--verdict-review` / `--verdict-fail` (their own pair for this site), then evaluates the
file: eval judges by the checkpoint's thresholds, so its verdict counts differed from the ones the lines hold without
a word. It says which pair judged the lines and how to judge as they were (docs/faults.md, "The verdict")."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke

pytestmark = pytest.mark.usefixtures("one_thread")


def evaluated(trained_checkpoint, small_dataset, tmp_path, *given: str, judged: tuple[str, ...] = ()) -> tuple[str, dict]:
    """What `eval` says of the predictions `predict` made with `given` (with `judged`: given to eval too)."""
    gt = small_dataset / "val.jsonl"
    pred, out = tmp_path / "p.jsonl", tmp_path / "m.json"
    r = invoke(["predict", "-c", trained_checkpoint, "-i", gt, "-o", pred, "--mode", "head", "--device", "cpu", *given])
    assert r.exit_code == 0, r.output
    r = invoke(["eval", "--pred", pred, "--gt", gt, "--out", out, *judged])
    assert r.exit_code == 0, r.output
    return " ".join(r.output.split()), json.loads(out.read_text(encoding="utf-8"))


def with_chosen_pair(trained_checkpoint, tmp_path, review: float, fail: float):
    """A copy of the checkpoint holding a pair `bbuvl eval --choose-thresholds` chose, in head mode."""
    from bbuvl.data.faults import Faults
    from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    ChosenThresholds(VerdictThresholds(review, fail), 0.8, 0.9, 1.0, 1.0, 2, 1, sorted(Faults.load().labels), "val.jsonl",
                     mode="head").save(ckpt)
    return ckpt


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_names_the_thresholds_predicts_command_line_judged_the_lines_with(trained_checkpoint, small_dataset,
                                                                              tmp_path):
    said, metrics = evaluated(trained_checkpoint, small_dataset, tmp_path, "--verdict-review", "0.3",
                              "--verdict-fail", "0.4")
    assert "were judged at review ≥ 0.3, fail ≥ 0.4, given to predict as --verdict-review and --verdict-fail" in said
    assert "give eval --verdict-review 0.3 --verdict-fail 0.4 to judge as the lines were" in said
    assert metrics["faults"]["thresholds"] == {"review": 0.25, "fail": 0.5}  # the checkpoint's, as before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_says_nothing_of_predicts_thresholds_when_predict_judged_by_the_checkpoints(trained_checkpoint,
                                                                                       small_dataset, tmp_path):
    said, _ = evaluated(trained_checkpoint, small_dataset, tmp_path)
    assert "given to predict" not in said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_pair_given_to_predict_equal_to_the_run_configs_beside_a_chosen_pair_is_named(trained_checkpoint,
                                                                                      small_dataset, tmp_path):
    # Told apart from none given by its values alone, it was taken for none: the lines judged at 0.25 / 0.5, eval at the
    # chosen pair, and not a word.
    ckpt = with_chosen_pair(trained_checkpoint, tmp_path, 0.1, 0.2)
    said, metrics = evaluated(ckpt, small_dataset, tmp_path, "--verdict-review", "0.25", "--verdict-fail", "0.5")
    assert "were judged at review ≥ 0.25, fail ≥ 0.5, given to predict as --verdict-review and --verdict-fail" in said
    assert metrics["faults"]["thresholds"] == {"review": 0.1, "fail": 0.2}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_lone_threshold_given_to_predict_is_named_beside_the_chosen_one_it_was_paired_with(trained_checkpoint,
                                                                                            small_dataset, tmp_path):
    # Predict paired --verdict-review 0.05 with the chosen fail 0.2; the note said the run config's 0.5, and eval given
    # what it advised judged the lines otherwise than predict had.
    ckpt = with_chosen_pair(trained_checkpoint, tmp_path, 0.1, 0.2)
    said, _ = evaluated(ckpt, small_dataset, tmp_path, "--verdict-review", "0.05")
    assert ("were judged at review ≥ 0.05, fail ≥ 0.2, given to predict as --verdict-review (the other the "
            "checkpoint's)") in said
    assert "give eval --verdict-review 0.05 --verdict-fail 0.2 to judge as the lines were" in said
