"""`--verdict-review` or `--verdict-fail` given alone is paired with the other threshold in effect (the checkpoint's
chosen one, else the run config's). When the two cross, predict and eval said only 'review (0.62777) must not exceed
fail (0.5)': a number the user never typed, from a file never named, and no word of what to do. They now name the
threshold in effect, where it comes from, and the option to add."""

from __future__ import annotations

import pytest

from tests.eval.test_judging import files as files  # noqa: F401 - the fixture
from tests.eval.test_judging import run
from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("given", "says"), [
    (["--verdict-fail", "0.1"], "--verdict-fail 0.1 is below the review threshold in effect for photos predicted in one "
                                "pass, 0.25 (the checkpoint's verdict_thresholds.json, else the run config's): give "
                                "--verdict-review too, at most 0.1"),
    (["--verdict-review", "0.9"], "--verdict-review 0.9 is above the fail threshold in effect for photos predicted in "
                                  "one pass, 0.5"),
])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_names_the_threshold_in_effect_and_the_option_to_add(trained_checkpoint, small_dataset, tmp_path, given,
                                                                     says):
    out = tmp_path / "pred.jsonl"
    text = refused(invoke(["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "-o", out,
                           "--mode", "head", "--device", "cpu", *given]), says)
    assert "Loading weights" not in text and not out.exists()
    both = invoke(["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "-o", out, "--mode", "head",
                   "--device", "cpu", "--verdict-review", "0.1", "--verdict-fail", "0.1"])
    assert both.exit_code == 0, both.output


def test_eval_names_the_threshold_in_effect_and_the_option_to_add(files, tmp_path):
    gt, pred, _ = files
    text = " ".join(run(gt, pred, tmp_path / "m.json", "--verdict-fail", "0.1", ok=False).split())
    assert ("--verdict-fail 0.1 is below the review threshold in effect for photos predicted in one pass, 0.25 (the "
            "checkpoint's verdict_thresholds.json, else the run config's): give --verdict-review too") in text, text
    run(gt, pred, tmp_path / "m.json", "--verdict-fail", "0.1", "--verdict-review", "0.1")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_lone_threshold_is_paired_with_the_checkpoints_chosen_one_not_the_configs(trained_checkpoint, small_dataset,
                                                                                   tmp_path):
    """The run config says fail at 0.5; the checkpoint chose review 0.2, fail 0.6: `--verdict-review 0.55` fits the pair
    in effect, and was refused for the config's 0.5 while the resume key was made."""
    import shutil

    from bbuvl.data.faults import Faults
    from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    ChosenThresholds(VerdictThresholds(0.2, 0.6), 0.8, 0.8, 1.0, 1.0, 4, 2, sorted(Faults.load().labels), "val.jsonl",
                     mode="head").save(ckpt)
    out = tmp_path / "pred.jsonl"
    argv = ["predict", "-c", ckpt, "-i", small_dataset / "val.jsonl", "-o", out, "--mode", "head", "--device", "cpu",
            "--verdict-review", "0.55"]
    first = invoke(argv)
    assert first.exit_code == 0, first.output
    assert "review at a fault score ≥ 0.55, fail ≥ 0.6" in " ".join(first.output.split())
    again = invoke(argv)
    assert again.exit_code == 0 and "2 already in" in " ".join(again.output.split()), again.output
