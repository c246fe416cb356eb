"""What `bbuvl predict` hashes, it hashes once. With one `--verdict-*` option it pairs it with the checkpoint's other
threshold, checking the chosen thresholds file against the checkpoint's training record: a checkpoint copied back
whole (new inodes, no record vouching for a file) was hashed for that check and again for the resume key
(docs/faults.md, "Choosing thresholds"; docs/resume.md)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from bbuvl.data.faults import Faults
from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds
from tests.reliability.test_a_resume_never_mixes_two_runs import invoke

pytestmark = pytest.mark.usefixtures("one_thread")

_WATCHED: dict[str, list[str]] = {}


def _count_reads(event: str, args: tuple) -> None:
    # A weights file read whole from Python is hashed; loading maps it, and the header check reads its first bytes.
    if event == "open" and _WATCHED and isinstance(args[0], (str, Path)) and str(args[0]) in _WATCHED:
        import traceback

        _WATCHED[str(args[0])].append("".join(traceback.format_stack(limit=6)))


sys.addaudithook(_count_reads)  # hooks cannot be removed: it counts only while _WATCHED names files


@pytest.fixture()
def copied_back(trained_checkpoint, tmp_path) -> Path:
    """The checkpoint with thresholds chosen for it, copied away and back whole, as a restore from a backup does."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    ChosenThresholds(VerdictThresholds(0.2, 0.6), 0.8, 0.8, 1.0, 1.0, 4, 2, sorted(Faults.load().labels), "val.jsonl",
                     mode="head").save(ckpt)
    spare = tmp_path / "spare"
    shutil.copytree(ckpt, spare)
    shutil.rmtree(ckpt)
    time.sleep(0.01)
    shutil.copytree(spare, ckpt)
    return ckpt


@pytest.mark.parametrize("given, said", [(("--verdict-review", "0.3"), "review at a fault score ≥ 0.3, fail ≥ 0.6"),
                                         (("--verdict-review", "0.55"), "review at a fault score ≥ 0.55, fail ≥ 0.6")])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_copied_back_whole_is_hashed_once_with_one_verdict_option(copied_back, small_dataset, tmp_path,
                                                                              given, said):
    weights = str(copied_back / "model.safetensors")
    _WATCHED[weights] = []
    try:
        r = invoke(["predict", "-c", copied_back, "-i", small_dataset / "val.jsonl", "-o", tmp_path / "p.jsonl",
                    "--mode", "head", "--device", "cpu", *given])
    finally:
        opened = _WATCHED.pop(weights)
    assert r.exit_code == 0, r.output
    assert said in " ".join(r.output.split())  # paired with the chosen fail (0.6), not the run config's 0.5
    hashed = [stack for stack in opened if "file_digest" in stack]
    # Once, for the resume key; it was twice: the chosen file's check hashed it again (three times at 0.55).
    assert len(hashed) == 1, hashed
