"""Trainer callbacks: epoch bookkeeping, head freezing, the non-finite guard, TensorBoard per run and a rich progress bar.

The training-health monitors (alarms) are the other callbacks of a run: train/monitors.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.utils import get_total_norm
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

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
        if gradients_finite(self.model):
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


def gradients_finite(model: torch.nn.Module) -> bool:
    """Whether every gradient of `model` is finite, with one host sync for all of them.

    The max-abs norm over all gradients is finite exactly when every entry is (NaN and inf propagate, and
    unlike the 2-norm it cannot overflow); torch computes it with fused per-device kernels.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return not grads or bool(torch.isfinite(get_total_norm(grads, norm_type=float("inf"))))


class RunTensorBoard(TensorBoardCallback):
    """HF's TensorBoard logging, into this run's `{output_dir}/tb` (beside the health monitors' events).

    transformers 5 reads the folder from the TENSORBOARD_LOGGING_DIR environment variable only, a process
    global that a second run in the same process would inherit; the callback's `logging_dir` is per run.
    """

    def __init__(self, log_dir: str | Path):
        super().__init__()
        self.logging_dir = str(log_dir)


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
