"""`bbuvl eval` reads, and with --choose-thresholds writes into, the checkpoint that made --pred (its manifest names
it): it refuses that checkpoint while a run still training holds the folder it lies in, naming the writer, as predict
and serve do. A killed run's stale lock is no writer."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from bbuvl.cli import app
from tests.reliability.test_train2_model_being_written import _hold


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


def test_eval_refuses_predictions_whose_checkpoint_a_running_train_holds(trained_checkpoint, small_dataset, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_checkpoint, run / "final")
    pred, gt = tmp_path / "p.jsonl", small_dataset / "val.jsonl"
    code, said = invoke("predict", "-c", run / "final", "-i", gt, "-o", pred, "--device", "cpu", "--mode", "head")
    assert code == 0, said
    child = _hold(run, "train")
    try:
        for extra in ([], ["--choose-thresholds"]):
            code, said = invoke("eval", "--pred", pred, "--gt", gt, "--out", tmp_path / "m.json", *extra)
            assert code == 2, said
            assert (f"{run / 'final'} (--pred's checkpoint): lies in {run}, which `bbuvl train` (pid {child.pid}) is "
                    "writing now") in said, said
            assert "copy" not in said  # eval has no option to give a copy of the checkpoint that made --pred
            assert not (tmp_path / "m.json").exists() and not (run / "final" / "verdict_thresholds.json").exists()
    finally:
        child.kill()
        child.wait()
    code, said = invoke("eval", "--pred", pred, "--gt", gt, "--out", tmp_path / "m.json")
    assert code == 0, said
