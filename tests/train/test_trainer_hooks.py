"""The Trainer internals BBUTrainer relies on, checked against the installed transformers so an upgrade fails here, loudly,
instead of silently skipping our checkpoint layout or loss scaling; and the callbacks' own small rules."""

from __future__ import annotations

import ast
import inspect
import math
import tomllib
from pathlib import Path

import pytest
import torch
import transformers
import transformers.trainer
from packaging.requirements import Requirement
from transformers import Trainer, TrainingArguments

from bbuvl.rl.trainer import GrpoTrainer
from bbuvl.train.callbacks import RunTensorBoard, gradients_finite
from bbuvl.train.trainer import BBUTrainer, warmup_steps

ROOT = Path(__file__).resolve().parents[2]

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
    "_finalize_training": ["self", "trial", "num_train_samples", "start_time"],
    "_save_checkpoint": ["self", "model", "trial"],
    "_clip_grad_norm": ["self", "model"],
    "_get_train_sampler": ["self", "train_dataset"],
}
# The oldest transformers pyproject.toml allows, and the Trainer internals our trainers read without defining them,
# each found in that release's transformers/trainer.py (a method, or an attribute Trainer's training loop sets) and
# the hooks above with the same parameters there. transformers 5.17 and 5.18 have no `_initial_global_step`: a
# trainer that read it trained every step and then died, before final/ and history.json.
FLOOR = "5.17"
READ = {"_get_output_dir", "_prepare_inputs", "_total_loss_scalar", "_tr_loss", "_train_batch_size"}
OURS = (BBUTrainer, GrpoTrainer)


def _private_names(cls: type) -> tuple[set[str], set[str]]:
    """The `self._x` names a class's own code reads, and those it defines or assigns."""
    tree = ast.parse(inspect.getsource(cls))
    read, own = set(), {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            (own if isinstance(node.ctx, ast.Store) else read).add(node.attr)
    return read, own


@pytest.mark.parametrize("name", HOOKS)
def test_the_trainer_hooks_we_override_keep_their_signature_and_their_caller(name):
    params = HOOKS[name]
    upgrade = (f"transformers {transformers.__version__} changed Trainer.{name}, which BBUTrainer overrides: re-check "
               "train/trainer.py against the new Trainer, then widen the transformers range in constraints.txt")
    assert list(inspect.signature(getattr(Trainer, name)).parameters) == params, upgrade
    ours = list(inspect.signature(getattr(BBUTrainer, name)).parameters)
    assert ours == params or ours == ["self", "args", "kwargs"]  # a pass-through override takes what Trainer gives
    source = inspect.getsource(transformers.trainer)
    # called, or handed to the code that calls it (the train loader's `sampler_fn=self._get_train_sampler`)
    assert f"self.{name}(" in source or f"=self.{name}," in source, upgrade


def test_every_private_trainer_method_we_override_is_a_checked_hook():
    overridden = {name for cls in OURS for name in vars(cls) if name.startswith("_") and not name.startswith("__")
                  and hasattr(Trainer, name)}
    assert overridden <= set(HOOKS), f"add {sorted(overridden - set(HOOKS))} to HOOKS, checked in transformers {FLOOR}"


def test_the_trainer_internals_we_read_are_those_checked_in_the_oldest_transformers_allowed():
    [floor] = [Requirement(r).specifier for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "dependencies"] if Requirement(r).name == "transformers"]
    assert [s.version for s in floor if s.operator == ">="] == [FLOOR], (
        "pyproject.toml changed transformers' floor: check READ and HOOKS in that release's trainer.py, then FLOOR")
    read, own = set(), set()
    for cls in OURS:
        r, o = _private_names(cls)
        read, own = read | r, own | o
    unchecked = read - own - READ
    assert not unchecked, (f"our trainers read Trainer's {sorted(unchecked)}: check each in transformers {FLOOR}'s "
                           "trainer.py (or record the value ourselves), then add it to READ")
    source = inspect.getsource(transformers.trainer)
    for name in READ:  # and the installed release still has each
        assert hasattr(Trainer, name) or f"self.{name} = " in source, name


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
