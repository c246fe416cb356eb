"""Training-health monitors: each alarm provoked for real in a training run, and silence on a healthy run."""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import pytest
import torch

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import TrainerCallback, TrainerControl, TrainerState

from bbuvl.config import MonitorConfig
from bbuvl.train.callbacks import EarlyStopping
from bbuvl.train.monitors import HEALTH_FILE, HealthLog, MemoryMonitor, OverfitMonitor
from bbuvl.train.param_groups import GROUPS
from bbuvl.train.trainer import train
from tests.callbacks import PoisonHeadOnce

pytestmark = pytest.mark.filterwarnings("ignore")


def _scalars(run_dir) -> dict[str, dict[int, float]]:
    """Every scalar of a run's TensorBoard folder: tag -> {step: value}."""
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


class _ConstantHead(TrainerCallback):
    """Forces the head to one answer for every image: its boxes, objectness and query vectors become the batch mean."""

    @staticmethod
    def _constant(module, inputs, out):
        same = {k: getattr(out, k).mean(dim=0, keepdim=True).expand_as(getattr(out, k))
                for k in ("boxes", "objectness_logits", "query_hidden")}
        return dataclasses.replace(out, **same)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.hook = model.detection_head.register_forward_hook(self._constant)

    def on_train_end(self, args, state, control, **kwargs):
        self.hook.remove()


class _Leak(TrainerCallback):
    """Keeps `mb` MB of freshly written tensors alive after every step, like a list of outputs never freed."""

    def __init__(self, mb: int):
        self.mb, self.kept = mb, []

    def on_step_end(self, args, state, control, **kwargs):
        self.kept.append(torch.ones(self.mb * 2**18))


@pytest.fixture(scope="module")
def healthy(monitor_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("healthy") / "run"
    cfg = monitor_config(out, "training.max_steps=4", "training.eval_steps=2", "monitor.every_steps=2",
                         "monitor.collapse_every_steps=2", "monitor.early_stopping_metric=eval_loss")
    return out, train(cfg, progress=False)


@pytest.fixture(scope="module")
def sick(monitor_config, tmp_path_factory):
    """One run provoking five alarms: NaN weight at step 2, constant head, a leak, gradients over 1, no improvement.
    The gradients alarm at each step over 1 (a window of 1): tests/train/test_grad_norm_alarm.py judges the window."""
    out = tmp_path_factory.mktemp("sick") / "run"
    cfg = monitor_config(out, "training.max_steps=8", "training.eval_steps=2", "monitor.every_steps=2",
                         "monitor.collapse_every_steps=2", "monitor.grad_norm_max=1.0", "monitor.grad_norm_window=1",
                         "monitor.memory_growth_mb=100", "monitor.early_stopping_metric=eval_loss",
                         "monitor.early_stopping_patience=1", "monitor.early_stopping_min_delta=1000",
                         "detection.grad_to_vlm=0")  # the poisoned head's NaN must stay in the head's groups
    result = train(cfg, progress=False, callbacks=[PoisonHeadOnce(step=2), _ConstantHead(), _Leak(mb=64)])
    return out, result, json.loads((out / HEALTH_FILE).read_text(encoding="utf-8"))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_healthy_run_raises_no_alarm_and_logs_norms_and_health_per_group(healthy):
    out, result = healthy
    assert result["alarms"] == {}
    assert json.loads((out / HEALTH_FILE).read_text(encoding="utf-8"))["alarms"] == []
    scalars = _scalars(out)
    for g in GROUPS:
        for prefix in ("gn", "wn"):
            values = scalars[f"{prefix}/{g}"]
            assert sorted(values) == [2, 4] and all(math.isfinite(v) and v > 0 for v in values.values()), (prefix, g)
    for tag in ("health/box_spread", "health/caption_spread", "health/overfit_ratio", "mem/rss_mb"):
        assert sorted(scalars[tag]) == [2, 4], tag
    assert not any(tag.startswith("alarm/") for tag in scalars)
    assert [h["step"] for h in result["history"] if "loss" in h and "train_runtime" not in h][-1] == 4  # not stopped early


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_nan_in_a_parameter_raises_a_nonfinite_alarm_naming_it_while_the_guard_skips_the_step(sick):
    out, result, health = sick
    nonfinite = [a for a in health["alarms"] if a["kind"] == "nonfinite"]
    # the gradients of step 2, and the weight still NaN at its end (the poison is lifted after the monitors ran);
    # the head's gradient stops at the VLM (detection.grad_to_vlm=0 above), so only the head's groups go NaN
    assert [(a["step"], a["subject"]) for a in nonfinite] == [(2, "detection,adapter"), (2, "weights:detection")]
    assert all("detection_head.objectness_head.weight" in a["message"] for a in nonfinite)
    assert result["nan_skipped"] == 1
    assert list(_scalars(out)["alarm/nonfinite"]) == [2]


def test_a_head_forced_to_constant_output_raises_a_collapse_alarm_with_its_spread(sick):
    out, result, health = sick
    assert result["alarms"]["collapse"]["first_step"] == 2
    assert "box std 0 " in result["alarms"]["collapse"]["first"]
    assert "boxes and captions are identical for every image" in result["alarms"]["collapse"]["first"]
    assert _scalars(out)["health/box_spread"] == {2: 0.0, 4: 0.0}


def test_a_leaking_loop_raises_a_memory_alarm(sick):
    out, result, health = sick
    alarm = result["alarms"]["memory"]
    assert alarm["first_step"] <= 4 and "resident memory grew" in alarm["first"]
    assert next(a["value"] for a in health["alarms"] if a["kind"] == "memory") > 100


def test_early_stopping_stops_the_run_after_patience_evaluations(sick):
    out, result, health = sick
    steps = [h["step"] for h in result["history"] if "eval_loss" in h]
    assert steps == [2, 4]  # best at 2, no improvement by 1000 at 4: patience 1 spent, max_steps 8 not reached
    assert result["alarms"]["early_stop"]["first_step"] == 4


def test_gradient_norm_alarms_name_exactly_the_groups_over_the_threshold(sick):
    out, result, health = sick
    gn = _scalars(out)
    over = {g for g in GROUPS if gn[f"gn/{g}"][4] > 1.0}
    alarmed = {a["subject"] for a in health["alarms"] if a["kind"] == "grad_norm" and a["step"] == 4}
    assert over and alarmed == over


def test_overfit_alarm_needs_a_ratio_above_the_threshold_that_rises():
    health = HealthLog()
    monitor = OverfitMonitor(MonitorConfig(overfit_ratio=2.0), health)
    state, control = TrainerState(), TrainerControl()
    for step, train_loss, eval_loss in ((10, 2.0, 5.0), (20, 1.0, 2.4), (30, 1.0, 3.0)):
        state.global_step = step
        monitor.on_log(None, state, control, logs={"loss": train_loss})
        monitor.on_evaluate(None, state, control, metrics={"eval_loss": eval_loss})
    # 2.5x (first: nothing to rise from), 2.4x (falling), 3.0x (above 2 and rising): one alarm
    assert [(a.step, round(a.value, 2)) for a in health.alarms] == [(30, 3.0)]


def test_early_stopping_on_a_metric_that_should_rise():
    health = HealthLog()
    stopper = EarlyStopping(MonitorConfig(early_stopping_metric="map", early_stopping_patience=2), health)
    state, control = TrainerState(), TrainerControl()
    for step, value in ((1, 0.30), (2, 0.35), (3, 0.34), (4, 0.35)):
        state.global_step = step
        stopper.on_evaluate(None, state, control, metrics={"eval_map": value})
    assert control.should_training_stop and stopper.best == (2, 0.35)


@pytest.mark.parametrize("first", [True, False])
def test_early_stoppings_warnings_are_said_by_the_first_process_alone(first, tmp_path, caplog):
    """Each rank runs the callback: under torchrun every rank said the same two warnings."""
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), eval_strategy="no", report_to=[])
    state, control = TrainerState(), TrainerControl()
    state.is_world_process_zero = first
    stopper = EarlyStopping(MonitorConfig(early_stopping_metric="map", early_stopping_patience=2), HealthLog())
    with caplog.at_level("WARNING", logger="bbuvl.health"):
        stopper.on_train_begin(args, state, control)
        stopper.on_evaluate(args, state, control, metrics={"eval_loss": 1.0})
    said = [r.getMessage() for r in caplog.records if r.name == "bbuvl.health"]
    assert len(said) == (2 if first else 0), said
    assert not first or ("no validation set" in said[0] and "not among the evaluation metrics" in said[1]), said


@pytest.mark.parametrize("metric", ["eval_lm_student", "eval_grounding", "eval_coordinate", "eval_loss_bbox"])
def test_early_stopping_on_a_loss_term_named_without_loss_waits_while_it_falls(metric):
    # Before: only a name holding "loss" was lower-better: eval_lm_student falling 3.0, 2.5, 2.0 stopped the run
    health = HealthLog()
    stopper = EarlyStopping(MonitorConfig(early_stopping_metric=metric, early_stopping_patience=2), health)
    state, control = TrainerState(), TrainerControl()
    for step, value in ((1, 3.0), (2, 2.5), (3, 2.0)):
        state.global_step = step
        stopper.on_evaluate(None, state, control, metrics={metric: value})
    assert not control.should_training_stop and stopper.best == (3, 2.0)
    for step, value in ((4, 2.2), (5, 2.1)):
        state.global_step = step
        stopper.on_evaluate(None, state, control, metrics={metric: value})
    assert control.should_training_stop


@pytest.mark.slow  # 56 steps with 14 evaluations, about 30 s: the default run keeps the alarm's own tests above
def test_training_on_four_photos_raises_an_overfit_alarm(monitor_config, small_dataset, tmp_path):
    """Four training photos, validated on six others: the training loss falls away from the validation loss.

    The default head (local tower, IoU objectness) memorises slowly: the validation / training ratio passes the
    default 2.0 only after ~80 steps, but is past 1.3 and rising within ~40, so the alarm is set at 1.3 here
    (a monitor setting, `monitor.overfit_ratio`) and the run is 56 steps."""
    lines = (small_dataset / "train.jsonl").read_text(encoding="utf-8").splitlines()
    train4, val6 = tmp_path / "train4.jsonl", tmp_path / "val6.jsonl"
    train4.write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    val6.write_text("\n".join(lines[4:]) + "\n" + (small_dataset / "val.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    images = small_dataset / "images"
    (tmp_path / "images").symlink_to(images)
    cfg = monitor_config(tmp_path / "run", f"data.train={train4}", f"data.val={val6}", "data.teacher_ratio=0",
                         "training.per_device_batch_size=4", "training.max_steps=56", "training.eval_steps=4",
                         "training.lr_scheduler=constant", *(f"training.lr.{g}=3e-3" for g in GROUPS), "monitor.every_steps=4",
                         "monitor.overfit_ratio=1.3",
                         "detection.grad_to_vlm=1")  # the whole model memorising the four photos, as before the default changed
    result = train(cfg, progress=False)
    assert "overfit" in result["alarms"], result["alarms"]
    ratios = _scalars(tmp_path / "run")["health/overfit_ratio"]
    first = result["alarms"]["overfit"]["first_step"]
    assert ratios[first] > 1.3 and ratios[first] > ratios[first - 4]


def test_memory_the_sample_cache_keeps_is_not_growth_and_a_leak_beside_it_is():
    health, kept = HealthLog(), []
    held = {"mb": 0.0}
    monitor = MemoryMonitor(MonitorConfig(memory_growth_mb=48), health, kept_mb=lambda: held["mb"])
    state, control = TrainerState(), TrainerControl()
    for step in (1, 2, 3):
        state.global_step = step
        if step == 2:  # the cache fills with 96 MB: what it holds is subtracted
            kept.append(torch.ones(96 * 2**18))
            held["mb"] = 96.0
        if step == 3:  # 96 MB more that nothing accounts for
            kept.append(torch.ones(96 * 2**18))
        monitor.on_step_end(None, state, control)
        assert bool(health.alarms) == (step == 3), step
    assert health.alarms[0].kind == "memory" and health.alarms[0].value > 48


def test_gradient_and_weight_norms_past_float32s_range_are_no_nonfinite_alarm():
    # Before: the squares summed in float32 overflowed past a norm of 1.8e19: "non-finite gradients ... the guard
    # skips the step" on a step the guard took, and "non-finite weights in group 'vision': ;" naming none
    from bbuvl.train.monitors import GradientMonitor
    from bbuvl.train.param_groups import group_of

    model = torch.nn.Module()
    model.detection_head = torch.nn.Linear(4, 4)
    assert group_of("detection_head.weight") is not None
    health = HealthLog()
    monitor = GradientMonitor(model, MonitorConfig(every_steps=1), health)
    state, control = TrainerState(), TrainerControl()
    monitor.on_train_begin(None, state, control)
    with torch.no_grad():
        model.detection_head.weight.fill_(3e19)  # finite, each square past float32's range
    model.detection_head(torch.full((1, 4), 3e19)).sum().backward()
    norms = monitor.group_grad_norms()
    assert norms and all(math.isfinite(v) for v in norms.values()), norms
    monitor.on_step_end(None, state, control)
    assert not [a for a in health.alarms if a.kind == "nonfinite"], health.alarms


def test_epoch_memory_growth_is_measured_from_one_whole_epochs_end_to_the_next_and_names_the_epoch_from_0():
    # Before: measured from the first step, it alarmed for a run stopped inside its first epoch ("epoch 1" at 0.75)
    health, kept = HealthLog(), []
    monitor = MemoryMonitor(MonitorConfig(memory_growth_mb=48), health)
    state, control = TrainerState(), TrainerControl()
    state.global_step = 1
    monitor.on_step_end(None, state, control)  # the per-step baseline
    epoch_alarms = lambda: [a for a in health.alarms if a.subject.startswith("epoch:")]  # noqa: E731
    for epoch in (0.75, 1.0):  # stopped inside epoch 0 (no epoch ended); then epoch 0 ends: the baseline
        kept.append(torch.ones(96 * 2**18))
        state.epoch = epoch
        monitor.on_epoch_end(None, state, control)
        assert not epoch_alarms(), epoch
    kept.append(torch.ones(96 * 2**18))
    state.epoch = 2.0  # epoch 1 ends, 96 MB above epoch 0's end
    monitor.on_epoch_end(None, state, control)
    [alarm] = epoch_alarms()
    assert 48 < alarm.value < 2 * 96 and "during epoch 1 (" in alarm.message and "at the end of epoch 0 ->" in alarm.message


def test_group_gradient_norms_are_the_steps_before_clipping(healthy):
    # Read before HF clips them (training.max_grad_norm 1 here, every norm above it): their root sum of squares is HF's
    # grad_norm, taken there too. A reading after clipping would sum to 1; one per rank before DDP reduced them (the
    # hook it replaces) to another norm (tests/train/test_two_ranks_nonfinite.py).
    out, result = healthy
    gn = _scalars(out)
    logged = {h["step"]: h["grad_norm"] for h in result["history"] if "grad_norm" in h}
    for step in (2, 4):
        assert logged[step] > 1
        assert math.sqrt(sum(gn[f"gn/{g}"][step] ** 2 for g in GROUPS)) == pytest.approx(logged[step], rel=1e-4), step


@pytest.mark.parametrize("rank", [0, 1])
def test_under_torchrun_the_first_process_alone_logs_an_alarm_every_rank_raises_and_each_its_own(rank, monkeypatch, caplog):
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    health = HealthLog()
    with caplog.at_level(logging.WARNING, logger="bbuvl.health"):
        health.alarm(3, "grad_norm", "llm", 9.0, "gradient norm of group 'llm' is 9")
        health.alarm(3, "memory", "rss", 600.0, "resident memory grew 600 MB", local=True)
    said = [r.getMessage() for r in caplog.records]
    # Before: each rank logged the grad_norm alarm, "rank 0: step 3" and "rank 1: step 3", one line a process
    grad = [m for m in said if "[grad_norm]" in m]
    assert grad == (["health alarm [grad_norm] step 3: gradient norm of group 'llm' is 9"] if rank == 0 else [])
    assert [m for m in said if "[memory]" in m] == [f"health alarm [memory] step 3: rank {rank}: resident memory grew 600 MB"]
    assert [a.message for a in health.alarms] == ["gradient norm of group 'llm' is 9", f"rank {rank}: resident memory grew 600 MB"]
