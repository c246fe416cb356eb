"""`--verdict-review` above `--verdict-fail`, typed together: eval refuses it at once, naming both options as typed
and the pair that would judge; it was 'verdict thresholds: review (0.6) must not exceed fail (0.4)', in names the user
never typed (docs/faults.md, "The verdict"). Predict names them as its options model does (tests/infer/test_batch.py)."""

from __future__ import annotations

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

SAID = ("--verdict-review 0.6 must not exceed --verdict-fail 0.4", "e.g. --verdict-review 0.4 --verdict-fail 0.6")


def test_review_above_fail_is_refused_by_eval_naming_both_options_as_typed(small_dataset, tmp_path):
    out = tmp_path / "out.json"
    gt = small_dataset / "val.jsonl"
    refused(invoke(["eval", "--pred", gt, "--gt", gt, "--out", out, "--verdict-review", "0.6", "--verdict-fail", "0.4"]),
            *SAID)
    assert not out.exists()
