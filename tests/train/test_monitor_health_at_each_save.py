"""health.json is written at each save, beside the checkpoint that carries the same alarms: a run killed mid-way (kill
-9, a lost node) had none until a resume rewrote it, and a long run's alarms were in its log only."""

from __future__ import annotations

import json

import pytest
from transformers import TrainerCallback

from bbuvl.train.monitors import HEALTH_FILE
from bbuvl.train.trainer import train
from tests.callbacks import PoisonHeadOnce

pytestmark = pytest.mark.filterwarnings("ignore")


class ReadHealthAtSave(TrainerCallback):
    """What health.json holds at each save, read as another process would (after the run's own callbacks)."""

    def __init__(self, out):
        self.out, self.seen = out, {}

    def on_save(self, args, state, control, **kwargs):
        path = self.out / HEALTH_FILE
        self.seen[state.global_step] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_health_json_holds_the_alarms_so_far_at_each_save(monitor_config, tmp_path):
    out = tmp_path / "run"
    cfg = monitor_config(out, "training.max_steps=2", "training.save_steps=2", "data.val=null",
                         "detection.grad_to_vlm=0")
    reader = ReadHealthAtSave(out)
    train(cfg, progress=False, callbacks=[PoisonHeadOnce(step=1), reader])
    at_save = reader.seen[2]
    assert at_save is not None, "no health.json beside checkpoint-2"
    assert {(a["step"], a["kind"]) for a in at_save["alarms"]} == {(1, "nonfinite")}
    assert at_save["summary"]["nonfinite"]["first_step"] == 1
    final = json.loads((out / HEALTH_FILE).read_text(encoding="utf-8"))
    assert final["alarms"] == at_save["alarms"] + [a for a in final["alarms"] if a["step"] > 2]
