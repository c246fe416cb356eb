"""What `bbuvl eval` reads, it reads once. With one `--verdict-*` option it pairs it with the checkpoint's other
threshold: the checkpoint that made the predictions is read once to find the pair and judge, so a checkpoint copied
back whole (new inodes, no record vouching for a file) is hashed once
(docs/outputs.md). The predictions' manifest (a 10,000-photo one holds 1.7 MB of digests) is parsed once."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.reliability.test_eval4_predictions_judged_by_their_own_checkpoint import evaluate, predicted, run, text  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_thread")

_WATCHED: dict[str, int] = {}


def _count_opens(event: str, args: tuple) -> None:
    if event == "open" and _WATCHED and isinstance(args[0], (str, Path)) and str(args[0]) in _WATCHED:
        _WATCHED[str(args[0])] += 1


sys.addaudithook(_count_opens)  # hooks cannot be removed: it counts only while _WATCHED names files


@pytest.mark.parametrize("given", [("--verdict-review", "0.3"), ("--verdict-fail", "0.9")])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_copied_back_whole_is_hashed_once_with_one_verdict_option(run, tmp_path, given):
    spare = tmp_path / "spare"
    shutil.copytree(run["ckpt"], spare)
    shutil.rmtree(run["ckpt"])
    time.sleep(0.01)
    shutil.copytree(spare, run["ckpt"])
    weights = str(run["ckpt"] / "model.safetensors")
    _WATCHED[weights] = 0
    try:
        r = evaluate(run, "m1.json", *given)
    finally:
        opened = _WATCHED.pop(weights)
    assert r.exit_code == 0 and "changed since" not in text(r), r.output
    # Once, to compare it with the manifest; it was 4: that and its training record (checked only when a chosen
    # thresholds file is there to check it against), once to find the pair, again to judge.
    assert opened == 1


def test_a_lone_verdict_option_that_cannot_pair_is_still_refused_naming_the_threshold_in_effect(run):
    r = evaluate(run, "m1.json", "--verdict-fail", "0.1")
    assert r.exit_code == 2, r.output
    assert "--verdict-fail 0.1 is below the review threshold in effect for photos predicted in one pass, 0.25" in text(r)
    assert not run["out"].with_name("m1.json").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_predictions_manifest_is_read_once_by_an_evaluation_with_a_report_and_a_baseline(run):
    assert evaluate(run, "base.json").exit_code == 0
    manifest = f"{run['out']}.predict.json"
    # Written again, as a resumed predict writes it: read anew, not taken from the evaluation above in this process.
    Path(manifest).write_bytes(Path(manifest).read_bytes())
    _WATCHED[manifest] = 0
    try:
        r = evaluate(run, "m.json", "--report", run["out"].with_name("report"), "--baseline",
                     run["out"].with_name("base.json"), "--verdict-review", "0.3")
    finally:
        opened = _WATCHED.pop(manifest)
    assert r.exit_code == 0, r.output
    assert opened == 1  # it was 7: the checkpoint named, judging, the record, the frame, pairing, the photos twice
