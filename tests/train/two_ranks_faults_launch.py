"""`bbuvl train CONFIG` with faults on the last rank only, for the two-process tests (launched by torch.distributed.run):
the head's boxes inf at step 2 (a batch that overflows there), the loss NaN at steps 4 and 5, and 48 MB more memory
kept after every step (a leak in that process alone)."""

from __future__ import annotations

import dataclasses
import sys

import torch
from transformers import TrainerCallback

from bbuvl.config import load_config
from bbuvl.train.trainer import train

INF_BOXES_AT, NAN_LOSS_AT, LEAK_MB = (2,), (4, 5), 48


class LastRankFaults(TrainerCallback):
    """The faults above, on the last rank; the others train as usual."""

    def __init__(self) -> None:
        self.kept: list[torch.Tensor] = []
        self.last = False
        self.state = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.state, self.last = state, args.process_index == args.world_size - 1
        if self.last:
            model.detection_head.register_forward_hook(self._boxes)
            model.register_forward_hook(self._loss)

    def _step(self) -> int:
        return self.state.global_step + 1

    def _boxes(self, module, inputs, out):
        return dataclasses.replace(out, boxes=out.boxes * float("inf")) if module.training and self._step() in INF_BOXES_AT else out

    def _loss(self, module, inputs, out):
        return dataclasses.replace(out, loss=out.loss * float("nan")) if module.training and self._step() in NAN_LOSS_AT else out

    def on_step_end(self, args, state, control, **kwargs):
        if self.last:
            self.kept.append(torch.ones(LEAK_MB * 2**18))


if __name__ == "__main__":
    train(load_config(sys.argv[1]), progress=False, callbacks=[LastRankFaults()])
