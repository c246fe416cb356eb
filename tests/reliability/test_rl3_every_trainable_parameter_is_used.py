"""GRPO from a checkpoint trained with `loss.coordinate_regression`: the coordinate read-out, which only SFT's term
reads, was left trainable, a parameter the GRPO loss never uses. DDP refuses one: `torchrun --nproc-per-node 2 -m
bbuvl.cli train configs/demo_grpo.yaml` from such a checkpoint stopped at its second step ("Parameter indices which did
not receive grad for rank 0: 58 59", the read-out's weight and bias). Every parameter a GRPO step trains now receives
a gradient, as DDP needs, and the read-out is saved as the start had it."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from bbuvl.rl.trainer import train_grpo
from bbuvl.train.trainer import train
from tests.rl.test_grpo_trainer import grpo_config_at

pytestmark = pytest.mark.filterwarnings("ignore")


class _Unused(TrainerCallback):
    """The trainable parameters without a gradient just before the first optimizer step."""

    def __init__(self):
        self.names: list[str] | None = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.names is None:
            self.names = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_grpo_from_a_checkpoint_with_a_coordinate_read_out_trains_only_what_its_loss_uses(run_config, small_dataset,
                                                                                         tmp_path):
    start = train(run_config("loss.coordinate_regression=4", "training.max_steps=1", "data.val=null",
                             "data.teachers=null"), progress=False)["final"]
    unused = _Unused()
    cfg = grpo_config_at(start, small_dataset, tmp_path / "grpo")("training.max_steps=1", "grpo.rewards.user=0",
                                                                  "grpo.rewards.user_function=null")
    final = train_grpo(cfg, progress=False, callbacks=[unused])["final"]
    assert unused.names == [], unused.names
    before, after = load_file(f"{start}/coordinate_readout.safetensors"), load_file(f"{final}/coordinate_readout.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
