"""A run the non-finite guard stops (training.max_consecutive_nan steps in a row) keeps what led there: health.json with
the alarm of every non-finite step, the one that stopped it too, naming its step and groups, and history.json with
the losses logged up to it. Before, HF ended no such run: neither file was written, and the guard raised before the
monitors saw the last step."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import TrainerCallback

from bbuvl.train.callbacks import TrainingDiverged
from bbuvl.train.monitors import HEALTH_FILE
from bbuvl.train.trainer import train

pytestmark = pytest.mark.filterwarnings("ignore")


class PoisonHeadFrom(TrainerCallback):
    """A NaN in one head weight from step `step` on: every step after it is non-finite (a diverged head)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 >= self.step:
            with torch.no_grad():
                model.detection_head.objectness_head.weight.fill_(float("nan"))


@pytest.fixture(scope="module")
def diverged(tiny_model_dir, small_dataset, tmp_path_factory):
    """A run whose head goes NaN at step 2 and that the guard stops at step 3 (two in a row)."""
    from bbuvl.config import load_config

    out = tmp_path_factory.mktemp("diverged") / "run"
    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", "data.teachers=null", "data.num_workers=0",
        f"training.output_dir={out}", "training.per_device_batch_size=2", "training.gradient_accumulation_steps=1",
        "training.max_steps=6", "training.logging_steps=1", "training.save_steps=100", "training.bf16=false",
        "training.gradient_checkpointing=false", "training.use_cpu=true", "training.max_consecutive_nan=2",
        "monitor.every_steps=5", "detection.num_queries=8", "detection.num_heads=4", "detection.caption_layers=1",
        "detection.decoder_layers=1", "detection.grad_to_vlm=0"])
    with pytest.raises(TrainingDiverged) as stopped:
        train(cfg, progress=False, callbacks=[PoisonHeadFrom(step=2)])
    return out, str(stopped.value)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_diverged_run_writes_health_json_with_the_alarm_of_the_step_that_stopped_it(diverged):
    out, said = diverged
    assert said.startswith("step 3: 2 consecutive steps with non-finite loss or gradients")
    assert f"the alarms in {out}/health.json" in said
    health = json.loads((out / HEALTH_FILE).read_text(encoding="utf-8"))
    gradients = [(a["step"], a["subject"]) for a in health["alarms"] if a["kind"] == "nonfinite"
                 and not a["subject"].startswith("weights:")]
    assert gradients == [(2, "detection,adapter"), (3, "detection,adapter")]  # the stopping step's own alarm too
    assert health["summary"]["nonfinite"]["last_step"] == 3
    assert not (out / "final").exists()


def test_a_diverged_run_writes_history_json_with_the_losses_logged_up_to_it(diverged):
    out, _ = diverged
    history = json.loads((out / "history.json").read_text(encoding="utf-8"))
    logged = [h["step"] for h in history if "loss" in h]
    assert logged == [1, 2]  # the step the guard stopped at ends before its log
    assert math.isfinite(history[0]["loss"]) and history[0]["loss"] > 0


def test_a_logged_window_of_non_finite_steps_only_logs_its_loss_as_nan_never_as_zero(diverged):
    """HF's filter logged 0.0 for it (the mean of no loss): a perfect loss in the log, history.json and TensorBoard,
    and a training loss the over-fit monitor averaged in."""
    out, _ = diverged
    history = {h["step"]: h for h in json.loads((out / "history.json").read_text(encoding="utf-8")) if "loss" in h}
    assert math.isnan(history[2]["loss"]) and history[2]["nan_skipped"] == 1
    assert math.isfinite(history[1]["loss"]) and history[1]["nan_skipped"] == 0
