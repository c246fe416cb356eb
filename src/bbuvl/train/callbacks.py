"""Trainer callbacks: epoch bookkeeping, head freezing, the non-finite guard, and a rich progress bar."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps with non-finite loss or gradients."""


@dataclass
class Throughput:
    """Counters the trainer fills per micro-batch, read by the progress bar."""

    samples: int = 0
    text_tokens: int = 0
    vision_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)

    def rates(self) -> tuple[float, float, float]:
        """Samples/s, text tokens/s, vision tokens/s since the start."""
        dt = max(time.perf_counter() - self.started, 1e-9)
        return self.samples / dt, self.text_tokens / dt, self.vision_tokens / dt


class EpochCallback(TrainerCallback):
    """Tells the dataset the epoch (teacher draws) and holds the head back for `detection_freeze_epochs`."""

    def __init__(self, dataset, model, freeze_epochs: float):
        self.dataset, self.model, self.freeze_epochs = dataset, model, freeze_epochs

    def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: D102
        epoch = int((state.epoch or 0) + 1e-6)  # a resume mid-epoch (e.g. 0.75) is still epoch 0
        self.dataset.set_epoch(epoch)
        if self.model.detection_head is not None:
            active = epoch >= self.freeze_epochs
            if active != self.model.detection_active:
                log.info("detection head %s at epoch %d", "enabled" if active else "frozen", epoch)
            self.model.detection_active = active


class NonFiniteGuard(TrainerCallback):
    """Skips an optimizer step whose gradients are not finite; stops after `max_consecutive` in a row."""

    def __init__(self, model: torch.nn.Module, max_consecutive: int):
        self.model, self.max_consecutive = model, max_consecutive
        self.skipped = 0
        self.consecutive = 0

    def on_pre_optimizer_step(self, args, state, control, **kwargs):  # noqa: D102
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        finite = all(torch.isfinite(g).all() for g in grads)
        if finite:
            self.consecutive = 0
            return
        self.skipped += 1
        self.consecutive += 1
        for p in self.model.parameters():
            p.grad = None  # the optimizer skips parameters without a gradient: the step becomes a no-op
        log.warning("step %d: non-finite loss or gradients, optimizer step skipped (%d so far)", state.global_step + 1, self.skipped)
        if self.consecutive >= self.max_consecutive:
            raise TrainingDiverged(
                f"{self.consecutive} consecutive steps with non-finite loss or gradients (training.max_consecutive_nan="
                f"{self.max_consecutive}); offending batches are in {args.output_dir}/nan_batches/. Lower the learning "
                "rate, check those samples, or use bf16 instead of fp16."
            )


class RichProgress(TrainerCallback):
    """One progress bar: step, loss, samples/s, text and vision tokens/s."""

    def __init__(self, throughput: Throughput, enabled: bool = True):
        self.throughput, self.enabled = throughput, enabled
        self.progress = None
        self.task = None
        self.last_loss = float("nan")

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        if not self.enabled or not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"))
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")
        self.throughput.started = time.perf_counter()
        self.throughput.samples = self.throughput.text_tokens = self.throughput.vision_tokens = 0

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102
        if not logs or not state.is_world_process_zero:
            return
        if "loss" in logs:
            self.last_loss = logs["loss"]
        shown = {k: v for k, v in logs.items() if k.startswith(("loss", "lm_", "eval_loss", "eval_lm")) or k == "nan_skipped"}
        if shown:
            text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
            (self.progress.console.print if self.progress else print)(f"step {state.global_step}: {text}")

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        if self.progress is None:
            return
        sps, tps, vps = self.throughput.rates()
        self.progress.update(self.task, completed=state.global_step,
                             info=f"loss {self.last_loss:.4f} | {sps:.2f} samples/s | {tps:.0f} text tok/s | {vps:.0f} vision tok/s")

    def on_train_end(self, args, state, control, **kwargs):  # noqa: D102
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
