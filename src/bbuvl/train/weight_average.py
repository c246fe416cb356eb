"""An exponential moving average of the trained weights (Polyak averaging), the weights a finished run saves.

After each optimizer step the average moves towards the live weights: a <- a + (1 - d) (w - a), with the decay d
ramped in as min(decay, (1 + n) / (10 + n)) after n steps, so the first steps' weights do not dominate a short run.
Only the weights the optimizer updates are averaged (a LoRA run averages its adapters and head, not the frozen base
model), and always in float32: weights held in bfloat16 (the shipped configs' `model.dtype`) have 8 bits of mantissa,
below which a step of 1 - d = 1% of the difference rounds away, and an average kept in their dtype would stay where it
started. When training ends the average is copied into the model before anything else reads it: the caption refit
fits its captions on the averaged features, and `final/` holds the averaged weights. Numbered checkpoints keep the
live weights, which resuming continues from, and the average beside them (`AVERAGE_FILE`), so that a resumed run
ends with the same average as one that never stopped (docs/faults_learning.md, "Averaged weights").
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import TrainerCallback

from bbuvl.atomic import atomic_path

AVERAGE_FILE = "weight_average.safetensors"
RAMP = 10  # the decay after n steps is at most (1 + n) / (RAMP + n)


class WeightAverageError(RuntimeError):
    """A checkpoint's weight average is missing or does not fit the model it would be loaded into."""


def ramped_decay(decay: float, step: int) -> float:
    """The decay used at optimizer step `step` (1 for the first): the configured one, ramped in."""
    return min(decay, (1 + step) / (RAMP + step))


class WeightAverage(TrainerCallback):
    """Keeps the average of the weights an optimizer updates, and copies it into the model when training ends."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"weight average: the decay must lie strictly between 0 and 1, got {decay}")
        self.model, self.decay = model, decay
        self.names: list[str] = []
        self.live: list[torch.Tensor] = []
        self.average: list[torch.Tensor] | None = None

    def track(self, optimizer: torch.optim.Optimizer) -> None:
        """Choose the weights to average: the model's parameters that `optimizer` updates, in the model's order."""
        updated = {id(p) for group in optimizer.param_groups for p in group["params"]}
        named = [(n, p) for n, p in self.model.named_parameters() if id(p) in updated]
        self.names = [n for n, _ in named]
        self.live = [p for _, p in named]

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):  # noqa: D102
        if not self.names:
            self.track(optimizer)
        if self.average is None:  # a fresh run; a resumed one has loaded its average already (`load`)
            self.average = [p.detach().float().clone() for p in self.live]

    @torch.no_grad()
    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        d = ramped_decay(self.decay, state.global_step)
        torch._foreach_lerp_(self.average, [p.detach().float() for p in self.live], 1 - d)

    @torch.no_grad()
    def on_train_end(self, args, state, control, **kwargs):  # noqa: D102
        for p, a in zip(self.live, self.average):
            p.copy_(a)

    def save(self, folder: str | Path) -> None:
        """Write the average into a checkpoint folder, under the parameters' names."""
        with atomic_path(Path(folder) / AVERAGE_FILE) as tmp:
            save_file({n: a.contiguous() for n, a in zip(self.names, self.average)}, str(tmp))

    def load(self, folder: str | Path, optimizer: torch.optim.Optimizer) -> None:
        """Read a checkpoint's average to resume with; WeightAverageError when it is missing or does not fit."""
        path = Path(folder) / AVERAGE_FILE
        if not path.is_file():
            raise WeightAverageError(f"{path}: missing, so the run's weight average cannot be resumed "
                                     f"(training.ema_decay is set; the checkpoint was saved without it)")
        self.track(optimizer)
        saved = load_file(str(path))  # its header was checked with the checkpoint's other files (train/run_dir.py)
        if sorted(saved) != sorted(self.names):
            extra, missing = sorted(set(saved) - set(self.names)), sorted(set(self.names) - set(saved))
            raise WeightAverageError(f"{path}: the average holds other weights than the model trains "
                                     f"(not trained: {extra[:3]}, not averaged: {missing[:3]})")
        for n, p in zip(self.names, self.live):
            if saved[n].shape != p.shape:
                raise WeightAverageError(f"{path}: {n} is {tuple(saved[n].shape)}, the model's is {tuple(p.shape)}")
        self.average = [saved[n].to(device=p.device, dtype=torch.float32) for n, p in zip(self.names, self.live)]
