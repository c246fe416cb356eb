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


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
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


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resumed_grpo_run_from_a_lora_checkpoint_continues_rewards_loss_and_weights_exactly(lora_checkpoint,
                                                                                             small_dataset, tmp_path):
    # As tests/rl/test_grpo_trainer.py's resume test, from adapters: a resume loads the checkpoint's adapters and its
    # optimizer's state over them, and the KL term's reference must still be the adapters as the start saved them.
    from bbuvl.rl.trainer import train_grpo
    from tests.callbacks import StopAt
    from tests.rl.test_grpo_trainer import _logged
    from tests.train.test_resume_records import scalars

    common = ("model.lora.enabled=true", "training.max_steps=4", "training.save_steps=2", "grpo.beta=0.05")
    full = train_grpo(grpo(lora_checkpoint, small_dataset, tmp_path / "a", *common), progress=False)
    cfg = grpo(lora_checkpoint, small_dataset, tmp_path / "b", *common)
    train_grpo(cfg, progress=False, callbacks=[StopAt(3)])  # step 3 logged past checkpoint-2, as a kill leaves it
    resumed = train_grpo(cfg, resume=True, progress=False)
    a, b = _logged(full["history"]), _logged(resumed["history"])
    assert sorted(k for k in b if k > 2) == [3, 4]
    assert any(a[s]["kl"] > 0 for s in (3, 4))  # the adapters had moved from the reference: a KL to compare
    for step in (3, 4):
        for key in ("loss", "reward", "reward_user", "kl", "answer_length", "clip_fraction"):
            assert b[step][key] == pytest.approx(a[step][key], abs=1e-6), (step, key)
    assert scalars(tmp_path / "b")["train/loss"] == scalars(tmp_path / "a")["train/loss"]
    wa, wb = load_model(full["final"])[0].state_dict(), load_model(resumed["final"])[0].state_dict()
    assert wa.keys() == wb.keys() and any("lora_B" in k for k in wa)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])][:5]


def test_the_start_checks_let_grpo_train_a_lora_checkpoints_adapters_on_and_still_refuse_it_to_sft(
        lora_checkpoint, small_dataset, tmp_path):
    # Before, train/run_inputs.py check_start read the family from the folder's config.json for both methods, and
    # refused GRPO's start as SFT's: `bbuvl train` never ran what docs/grpo.md, "From LoRA", describes.
    from bbuvl.train.run_inputs import check_start

    check_start(grpo(lora_checkpoint, small_dataset, tmp_path / "grpo", "model.lora.enabled=true"))
    sft = load_config(None, [f"model.path={lora_checkpoint}", f"data.train={small_dataset / 'train.jsonl'}"])
    with pytest.raises(ValueError, match=r"a LoRA checkpoint .*merge the adapters into one first \(bbuvl model "):
        check_start(sft)
