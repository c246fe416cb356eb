"""The grad_norm alarm judges a group's norm over its last steps: silent through the short bursts of a healthy run
(the demo's stage A, a tiny run at a healthy LR), raised by a learning rate that diverges (docs/design.md, "Training health")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bbuvl.config import MonitorConfig
from bbuvl.train.monitors import sustained_over
from bbuvl.train.param_groups import GROUPS
from bbuvl.train.trainer import train

pytestmark = pytest.mark.filterwarnings("ignore")

# The detection group's gradient norm before clipping, steps 1-100 of the demo's stage A (configs/demo_shapes.yaml,
# one process, batch 8, clipped to 1 every step): its loss fell from 32.5 to 9.2 through both bursts.
DEMO_STAGE_A_DETECTION = (
    4.6, 4.5, 4.7, 4.4, 5.0, 5.9, 6.2, 7.1, 8.1, 10.9, 10.8, 14.3, 17.9, 22.0, 24.9, 47.3, 17.6, 56.1, 136.5, 144.9,
    128.8, 103.4, 49.3, 14.2, 19.4, 29.9, 19.8, 36.9, 28.3, 15.1, 12.9, 18.2, 18.5, 14.8, 15.4, 8.3, 22.9, 8.7, 8.2, 9.8,
    14.5, 16.1, 9.0, 121.6, 91.0, 156.9, 52.3, 17.1, 14.0, 25.5, 14.7, 20.2, 17.9, 12.1, 12.8, 10.3, 9.6, 11.0, 5.9, 4.8,
    10.2, 13.6, 7.4, 25.3, 20.5, 36.8, 20.1, 16.0, 13.4, 13.4, 18.8, 8.4, 16.6, 12.8, 14.2, 18.5, 11.5, 20.1, 19.8, 16.9,
    17.7, 22.4, 20.2, 8.3, 15.3, 9.0, 19.2, 17.6, 8.9, 21.1, 27.5, 22.9, 19.9, 11.4, 15.2, 14.8, 25.3, 15.1, 11.9, 16.1)


# (a healthy LR, one that diverges) of each family's tiny model. Qwen3.5's detection norms run an order smaller: at 1e-3
# they stayed under 16 (no burst to judge), at 1e-2 they burst to 778 and 196 (steps 3-4) and its loss fell
# from 29.8 to 14.7; at 0.1 its loss peaked at 18 times the first and was back under twice it by step 12, at 0.3 it
# diverged (5.9e6 at step 12). Measured on the 2-core CPU machine, one thread.
LRS = {"qwen2_5_vl": ("1e-3", "0.1"), "qwen3_vl": ("1e-3", "0.1"), "qwen3_5": ("1e-2", "0.3")}


def _alarm_steps(norms: list[float], limit: float, window: int) -> list[int]:
    return [s for s in range(1, len(norms) + 1) if sustained_over(norms[:s], limit, window)]


def _run(monitor_config, out, lr: str, steps: int) -> tuple[dict, dict[str, list[float]], dict[int, float]]:
    """A real run of the tiny model at `lr` in every group: its result, each group's norm per step, its loss per step."""
    cfg = monitor_config(out, f"training.max_steps={steps}", "monitor.every_steps=1", "training.eval_steps=1000",
                         "training.save_steps=1000", *(f"training.lr.{g}={lr}" for g in GROUPS))
    result = train(cfg, progress=False)
    acc = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    norms = {g: [e.value for e in sorted(acc.Scalars(f"gn/{g}"), key=lambda e: e.step)] for g in GROUPS}
    assert all(len(v) == steps for v in norms.values())
    losses = {h["step"]: h["loss"] for h in result["history"] if "loss" in h and "train_runtime" not in h}
    return result, norms, losses


def _grad_norm_alarms(out: Path) -> list[dict]:
    return [a for a in json.loads((out / "health.json").read_text(encoding="utf-8"))["alarms"] if a["kind"] == "grad_norm"]


def test_the_demo_stage_a_bursts_alarmed_on_every_step_above_the_limit_and_no_longer_do():
    cfg = MonitorConfig()
    norms = list(DEMO_STAGE_A_DETECTION)
    # A window of 1 is the rule before: each step above 100 alarmed, the six the demo's health.json held
    assert _alarm_steps(norms, cfg.grad_norm_max, 1) == [19, 20, 21, 22, 44, 46]
    assert (cfg.grad_norm_max, cfg.grad_norm_window) == (100.0, 10)
    assert _alarm_steps(norms, cfg.grad_norm_max, cfg.grad_norm_window) == []
    # ... and the same bursts kept up twice as long would: six of ten steps
    kept_up = norms[:18] + norms[18:22] * 2 + norms[22:]
    assert _alarm_steps(kept_up, cfg.grad_norm_max, cfg.grad_norm_window)[0] == 24


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_healthy_run_with_bursts_above_the_limit_raises_no_grad_norm_alarm(monitor_config, tiny_family, tmp_path):
    result, norms, losses = _run(monitor_config, tmp_path / "run", LRS[tiny_family][0], 20)
    over = [s for s, v in enumerate(norms["detection"], 1) if v > MonitorConfig().grad_norm_max]
    assert len(over) >= 2, norms["detection"]  # each an alarm before, as the demo's were
    assert sum(losses[s] for s in (17, 18, 19, 20)) / 4 < losses[1] - 5, losses  # and the run learned through them
    assert "grad_norm" not in result["alarms"] and _grad_norm_alarms(tmp_path / "run") == []


def test_a_learning_rate_that_diverges_raises_the_alarm_where_the_norms_stay_above_the_limit(monitor_config, tiny_family,
                                                                                              tmp_path):
    _, norms, losses = _run(monitor_config, tmp_path / "run", LRS[tiny_family][1], 12)  # 30-100 times the healthy's
    # diverged, finite (no non-finite alarm tells it), and not back by the end
    assert max(losses.values()) > 100 * losses[1] and losses[12] > 2 * losses[1], losses
    cfg = MonitorConfig()
    expected = {(s, g) for g in GROUPS for s in _alarm_steps(norms[g], cfg.grad_norm_max, cfg.grad_norm_window)}
    alarms = _grad_norm_alarms(tmp_path / "run")
    assert {(a["step"], a["subject"]) for a in alarms} == expected
    first = next(a for a in alarms if a["subject"] == "detection")
    assert first["step"] <= 10, alarms
    assert "above monitor.grad_norm_max=100 on 6 of its last" in first["message"], first
    assert first["message"].endswith("lower its LR (training.lr.detection)")
