"""configs/grpo.yaml as shipped, on the tiny model and CPU (its frame and 3B-sized settings overridden as a user
trying it first would): a short try of fewer steps than training.logging_steps logged no reward at all, and no summary
table, without a word; the start now says so."""

import logging
from pathlib import Path

import pytest

from bbuvl.config import load_config
from bbuvl.rl.trainer import grpo_ignores, train_grpo

pytestmark = pytest.mark.filterwarnings("ignore")

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "grpo.yaml"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_shipped_config_tried_for_fewer_steps_than_it_logs_every_says_no_reward_will_be_logged(
        trained_checkpoint, small_dataset, tmp_path, caplog):
    cfg = load_config(SHIPPED, [
        f"model.path={trained_checkpoint}", "model.dtype=float32", f"data.train={small_dataset / 'train.jsonl'}",
        f"training.output_dir={tmp_path / 'grpo'}", "training.max_steps=2", "training.bf16=false",
        "training.use_cpu=true", "training.gradient_checkpointing=false", "training.per_device_batch_size=1",
        "training.gradient_accumulation_steps=1", "grpo.group_size=2", "grpo.max_new_tokens=48", "data.num_workers=0"])
    assert cfg.training.logging_steps == 5  # as shipped
    with caplog.at_level(logging.WARNING):
        history = train_grpo(cfg, progress=False)["history"]
    assert not any("reward" in h for h in history)  # what the warning is for
    said = " ".join(r.getMessage() for r in caplog.records if r.name == "bbuvl.rl.trainer")
    assert "training.logging_steps (5): the run stops at training.max_steps (2) before its first log, so no reward, " \
           "KL or answer length is logged" in said, said
    every_step = cfg.model_copy(update={"training": cfg.training.model_copy(update={"logging_steps": 1})})
    assert "training.logging_steps" not in " ".join(grpo_ignores(every_step))
