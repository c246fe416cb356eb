"""What a checkpoint's training records say of its losses (train/run_health.py), read from real run folders."""

from __future__ import annotations

import json
import shutil

import pytest

from bbuvl.train.run_health import loss_record


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_saved_while_its_loss_was_nan_is_diverged_by_its_own_trainer_state(diverged_checkpoint, tmp_path):
    record = loss_record(diverged_checkpoint)
    assert record.diverged and record.nonfinite == record.logged[1:] and record.alarms, record
    assert record.source == diverged_checkpoint / "trainer_state.json"
    assert record.health == diverged_checkpoint.parent / "health.json"
    copy = tmp_path / "copied"  # a numbered checkpoint carries its own record wherever it is copied
    shutil.copytree(diverged_checkpoint, copy)
    assert loss_record(copy).diverged and loss_record(copy).health is None


def test_a_final_folder_is_read_by_its_runs_history_and_health_and_not_once_copied_out(trained_checkpoint, tmp_path):
    record = loss_record(trained_checkpoint)
    assert record.source == trained_checkpoint.parent / "history.json" and not record.diverged
    run = tmp_path / "run"
    shutil.copytree(trained_checkpoint, run / "final")
    # the run's last logged loss NaN, as json writes it; an evaluation's entry and the end's summary carry no "loss"
    history = [{"step": 1, "loss": 3.5}, {"step": 2, "loss": float("nan")}, {"step": 2, "eval_loss": 4.0},
               {"step": 2, "train_loss": float("nan")}]
    (run / "history.json").write_text(json.dumps(history), encoding="utf-8")
    (run / "health.json").write_text(json.dumps({"summary": {}, "alarms": [
        {"step": 2, "kind": "nonfinite", "subject": "llm", "value": float("nan"), "message": "m"},
        {"step": 1, "kind": "grad_norm", "subject": "llm", "value": 9.0, "message": "m"}]}), encoding="utf-8")
    record = loss_record(run / "final")
    assert record.diverged and (record.logged, record.nonfinite, record.alarms) == ([1, 2], [2], [2]), record
    assert "the last one logged too" in record.said() and f"{run / 'health.json'} record" in record.said()
    shutil.copytree(run / "final", tmp_path / "elsewhere")  # out of its run: nothing beside it to read
    assert loss_record(tmp_path / "elsewhere") is None
