"""`monitor.enabled: false` turns the alarms off, not early stopping, which ends the run: with it, a run asked to stop
after `early_stopping_patience` evaluations without improvement trained on to training.max_steps without a word."""

from __future__ import annotations

import logging

import pytest

from bbuvl.config import MonitorConfig
from bbuvl.train.callbacks import EarlyStopping
from bbuvl.train.monitors import HEALTH_FILE, training_health
from bbuvl.train.trainer import train

pytestmark = pytest.mark.filterwarnings("ignore")


def test_alarms_off_keep_early_stopping_alone_and_off_without_a_metric():
    on = MonitorConfig(enabled=False, early_stopping_metric="eval_loss")
    assert [type(c) for c in training_health(None, None, None, on)] == [EarlyStopping]
    assert training_health(None, None, None, MonitorConfig(enabled=False)) == []


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_with_alarms_off_still_stops_early_and_says_so(monitor_config, tmp_path, caplog):
    out = tmp_path / "run"
    cfg = monitor_config(out, "training.max_steps=6", "training.eval_steps=1", "monitor.enabled=false",
                         "monitor.early_stopping_metric=eval_loss", "monitor.early_stopping_patience=1",
                         "monitor.early_stopping_min_delta=1000")
    with caplog.at_level(logging.WARNING, "bbuvl.health"):
        result = train(cfg, progress=False)
    assert [h["step"] for h in result["history"] if "eval_loss" in h] == [1, 2]  # best at 1, patience spent at 2
    assert any("early stopping: eval_loss" in r.getMessage() and "training stops" in r.getMessage()
               for r in caplog.records)
    assert result["alarms"] == {} and not (out / HEALTH_FILE).exists()  # the alarms stay off
