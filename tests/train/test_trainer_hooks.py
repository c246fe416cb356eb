"""The Trainer internals BBUTrainer relies on, checked against the installed transformers so an upgrade fails here, loudly,
instead of silently skipping our checkpoint layout or loss scaling; and the callbacks' own small rules."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import transformers
import transformers.trainer
from transformers import Trainer, TrainingArguments

from bbuvl.train.callbacks import RunTensorBoard, gradients_finite
from bbuvl.train.trainer import BBUTrainer, warmup_steps

# Trainer method we override -> its parameters (Trainer's own code must still call it, or our override never runs)
HOOKS = {
    "_save": ["self", "output_dir", "state_dict"],
    "_load_from_checkpoint": ["self", "resume_from_checkpoint", "model"],
    "get_batch_samples": ["self", "epoch_iterator", "num_batches", "device"],
    "_run_epoch": ["self", "model", "epoch", "train_dataloader", "steps_in_epoch", "num_update_steps_per_epoch", "trial",
                   "ignore_keys_for_eval", "start_time", "resume_from_checkpoint", "epochs_trained",
                   "steps_trained_in_current_epoch"],
    "_save_optimizer_and_scheduler": ["self", "output_dir"],
    "_load_optimizer_and_scheduler": ["self", "checkpoint"],
}


@pytest.mark.parametrize("name", HOOKS)
def test_the_trainer_hooks_we_override_keep_their_signature_and_their_caller(name):
    params = HOOKS[name]
    upgrade = (f"transformers {transformers.__version__} changed Trainer.{name}, which BBUTrainer overrides: re-check "
               "train/trainer.py against the new Trainer, then widen the transformers range in constraints.txt")
    assert list(inspect.signature(getattr(Trainer, name)).parameters) == params, upgrade
    ours = list(inspect.signature(getattr(BBUTrainer, name)).parameters)
    assert ours == params or ours == ["self", "args", "kwargs"]  # a pass-through override takes what Trainer gives
    assert f"self.{name}(" in inspect.getsource(transformers.trainer), upgrade


def test_gradients_finite_sees_one_nan_or_inf_among_mixed_dtypes_and_ignores_parameters_without_gradients():
    model = torch.nn.ModuleList([torch.nn.Linear(3, 2), torch.nn.Linear(2, 2).to(torch.bfloat16), torch.nn.Linear(2, 1)])
    assert gradients_finite(model)  # no gradients at all
    for p in model.parameters():
        p.grad = torch.full_like(p, 3e38 if p.dtype == torch.float32 else 1.0)  # huge but finite: no overflow
    model[2].weight.grad = None
    assert gradients_finite(model)
    for bad in (float("nan"), float("inf"), -float("inf")):
        model[1].bias.grad[0] = bad
        assert not gradients_finite(model)
        model[1].bias.grad[0] = 0.0


@pytest.mark.parametrize("ratio,total,expected", [(0.0, 1000, 0), (0.03, 1000, 30), (0.5, 7, 4), (1.0, 1000, 1000)])
def test_warmup_ratio_becomes_that_fraction_of_the_total_steps(ratio, total, expected, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), warmup_steps=warmup_steps(ratio), use_cpu=True, report_to="none")
    assert args.get_warmup_steps(total) == expected


def test_tensorboard_writes_into_the_run_folder_whatever_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "elsewhere"))
    assert RunTensorBoard(tmp_path / "run" / "tb").logging_dir == str(tmp_path / "run" / "tb")
    assert math.isclose(warmup_steps(0.25), 0.25)
