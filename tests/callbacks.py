"""Trainer callbacks that provoke failures for real in tests (shared by training and diagnostics tests)."""

import torch
from transformers import TrainerCallback


class PoisonHeadOnce(TrainerCallback):
    """A NaN in one head weight for the whole of step `step` (a corrupt batch's effect), restored afterwards."""

    def __init__(self, step: int):
        self.step, self.saved = step, None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            w = model.detection_head.objectness_head.weight
            self.saved = w.detach().clone()
            with torch.no_grad():
                w.fill_(float("nan"))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.saved is not None:
            with torch.no_grad():
                model.detection_head.objectness_head.weight.copy_(self.saved)
            self.saved = None


class StopAt(TrainerCallback):
    """Stops training after optimizer step `step`, as a kill would (the checkpoints saved so far stay)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True
