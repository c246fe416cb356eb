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


class AtStart(TrainerCallback):
    """The model a run trains (`model`), its parameters' values (`weights`) and the names of those that train
    (`trainable`) as its first step finds them: read from the run itself, where a test built the same config a second
    time to read them."""

    def __init__(self):
        self.model, self.weights, self.trainable = None, {}, set()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = model
        self.weights = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}


def whole_and_resumed(run_config, tmp_path, *overrides: str, stop: int = 3) -> tuple[dict, dict]:
    """`train`'s results for a run never stopped (in tmp_path/a) and for the same run stopped after step `stop`, as a
    kill leaves it, then resumed (in tmp_path/b): what an exact resume is checked by."""
    from bbuvl.train.trainer import train

    whole = train(run_config(*overrides, f"training.output_dir={tmp_path / 'a'}"), progress=False)
    cfg = run_config(*overrides, f"training.output_dir={tmp_path / 'b'}")
    train(cfg, progress=False, callbacks=[StopAt(stop)])
    return whole, train(cfg, resume=True, progress=False)
