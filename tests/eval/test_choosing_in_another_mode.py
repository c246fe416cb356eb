"""A checkpoint keeps one pair of verdict thresholds for each framing, judging the photos of the mode it was chosen in
(a head's scores and generate mode's are not on one scale). `bbuvl eval --choose-thresholds` on another mode's
predictions replaced that pair without a word: the first mode's photos went back to the run config's thresholds, and
only a later predict's note said so."""

from __future__ import annotations

import pytest

from bbuvl.infer.output import Manifest, claim_output, manifest_path
from bbuvl.infer.verdict import THRESHOLDS_FILE, ChosenThresholds
from tests.eval.test_judging import files as files  # noqa: F401 - the fixture
from tests.eval.test_judging import run


def predicted_in(pred, gt, ckpt, mode: str) -> None:
    """Make the predictions' manifest say `mode` predicted them, as `bbuvl predict --mode MODE` writes it."""
    lines = pred.read_text(encoding="utf-8")
    pred.unlink()
    manifest_path(pred).unlink()
    claim_output(pred, Manifest(input=str(gt), checkpoint=str(ckpt), mode=mode))
    pred.write_text(lines, encoding="utf-8")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_choosing_in_another_mode_says_whose_thresholds_it_replaces(files, tmp_path):
    gt, pred, ckpt = files
    first = " ".join(run(gt, pred, tmp_path / "m1.json", "--choose-thresholds").split())
    head = ChosenThresholds.load(ckpt)
    assert head.mode == "head" and "held thresholds chosen on" not in first
    again = " ".join(run(gt, pred, tmp_path / "m2.json", "--choose-thresholds", "--target-recall", "1",
                         "--overwrite").split())
    assert "held thresholds chosen on" not in again  # the same mode's pair, chosen again

    predicted_in(pred, gt, ckpt, "generate")
    head = ChosenThresholds.load(ckpt)
    output = " ".join(run(gt, pred, tmp_path / "m3.json", "--choose-thresholds", "--overwrite").split())
    assert ChosenThresholds.load(ckpt).mode == "generate"
    assert (f"note: {THRESHOLDS_FILE} held thresholds chosen on head mode's predictions (review "
            f"{head.thresholds.review:g}, fail {head.thresholds.fail:g}, chosen on {gt}), replaced by generate mode's: "
            "a checkpoint keeps one pair for these photos, so head mode's photos are judged by the run config's "
            "thresholds now") in output, output
