"""GRPO from a LoRA checkpoint trains its adapters on, against a reference that holds them as loaded (docs/grpo.md)."""

from __future__ import annotations

import pytest
import torch

from bbuvl.config import ConfigError, load_config
from bbuvl.model.checkpoint import load_model
from bbuvl.rl.trainer import build_grpo_run, make_grpo_trainer, read_grpo_inputs
from bbuvl.train.trainer import train
from tests.diagnostics.conftest import one_thread  # noqa: F401 - one torch thread, as the training tests
from tests.lora_runs import one_step_lora
from tests.rl.reference_check import assert_reference_is_the_start

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def lora_checkpoint(trained_checkpoint, small_dataset, tmp_path_factory):
    """One LoRA step of SFT (r 4) over the session's trained checkpoint: its final/ holds adapters."""
    out = tmp_path_factory.mktemp("lora-sft") / "run"
    train(load_config(None, one_step_lora(trained_checkpoint, small_dataset, out, save_steps=100)), progress=False)
    return out / "final"


def grpo(lora_checkpoint, small_dataset, out, *overrides):
    """GRPO for one step from `lora_checkpoint` with a reward that differs between rollouts (the answer's size)."""
    return load_config(None, [
        f"model.path={lora_checkpoint}", "model.dtype=float32", "training.method=grpo",
        f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", "data.teachers=null", "data.num_workers=0",
        f"training.output_dir={out}", "training.per_device_batch_size=2", "training.gradient_accumulation_steps=1",
        "training.max_steps=1", "training.logging_steps=1", "training.save_steps=100", "training.bf16=false",
        "training.gradient_checkpointing=false", "training.use_cpu=true", "training.warmup_ratio=0",
        "training.lr.llm=1e-3", "training.lr.adapter=1e-3", "grpo.group_size=3", "grpo.max_new_tokens=48",
        "grpo.beta=0.1", "grpo.rewards.user=1.0", "grpo.rewards.user_function=tests.rl.reward_fns:answer_size",
        *overrides])


def adapters(model) -> dict[str, torch.Tensor]:
    """The LoRA adapters' weights of `model`, copied."""
    return {n: p.detach().clone() for n, p in model.vlm.named_parameters() if "lora_" in n}


def test_grpo_from_a_lora_checkpoint_trains_its_adapters_against_them_as_loaded(lora_checkpoint, small_dataset, tmp_path):
    cfg = grpo(lora_checkpoint, small_dataset, tmp_path / "grpo", "model.lora.enabled=true")
    start = load_model(lora_checkpoint)[0]
    loaded = adapters(start)
    run = build_grpo_run(cfg)
    trainer = make_grpo_trainer(run, progress=False)
    # The reference is the start: the adapters as the checkpoint holds them
    assert loaded and all(torch.equal(p, loaded[n]) for n, p in adapters(trainer.reference).items())
    trainer.train()
    assert trainer.state.log_history[0]["zero_spread_groups"] < 1  # a reward that taught something
    # Before, peft loaded them frozen: the run trained the vision positions alone and said nothing
    moved = [n for n, p in adapters(run.model).items() if not torch.equal(p, loaded[n])]
    assert moved and any("lora_B" in n for n in moved)
    assert all(torch.equal(p, loaded[n]) for n, p in adapters(trainer.reference).items())
    assert_reference_is_the_start(run, trainer, start, cfg)


def test_grpo_without_lora_from_a_lora_checkpoint_is_refused_naming_both_ways_on(lora_checkpoint, small_dataset,
                                                                                  tmp_path):
    cfg = grpo(lora_checkpoint, small_dataset, tmp_path / "grpo")
    with pytest.raises(ConfigError, match=r"is a LoRA checkpoint .* model.lora.enabled is false.* set "
                                          r"model.lora.enabled: true .*\(bbuvl model merge-lora"):
        read_grpo_inputs(cfg)
