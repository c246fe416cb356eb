"""`--verdict-review` above `--verdict-fail`, typed together: predict and eval refuse it at once, naming both options
as typed and the pair that would judge; it was the options model's 'verdict_review (0.6) must not exceed verdict_fail
(0.4)', in names the user never typed (docs/faults.md, "The verdict")."""

from __future__ import annotations

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

SAID = ("--verdict-review 0.6 must not exceed --verdict-fail 0.4", "e.g. --verdict-review 0.4 --verdict-fail 0.6")


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_review_above_fail_is_refused_naming_both_options_as_typed(trained_checkpoint, small_dataset, tmp_path, command):
    out = tmp_path / "out.json"
    gt = small_dataset / "val.jsonl"
    args = (["predict", "-c", trained_checkpoint, "-i", gt, "-o", out, "--mode", "head", "--device", "cpu"]
            if command == "predict" else ["eval", "--pred", gt, "--gt", gt, "--out", out])
    refused(invoke([*args, "--verdict-review", "0.6", "--verdict-fail", "0.4"]), *SAID)
    assert not out.exists()
