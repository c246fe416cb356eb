"""GRPO steps in which every photo's rollouts scored alike (a budget that closes every answer before its first object):
every advantage is 0, so the loss and the gradient are 0, nothing is divided by zero and the weights stay as they came;
the run says so once, with the budget, where it logged zeros without a word."""

import logging
import math

import pytest
import torch

from bbuvl.model.checkpoint import load_model
from bbuvl.rl.trainer import train_grpo
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore")

SAID = "rollouts all earned the same reward (zero_spread_groups 1"


def _said(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bbuvl.rl.trainer" and SAID in r.getMessage()]


def test_a_budget_that_holds_no_object_learns_nothing_divides_by_nothing_and_says_so_once(grpo_config, trained_checkpoint,
                                                                                         caplog):
    """Four tokens close every answer as `[]`: each photo's three rollouts earn one reward (0, the photos have parts)."""
    cfg = grpo_config("grpo.max_new_tokens=4", "grpo.rewards.user=0", "grpo.rewards.user_function=null", "grpo.beta=0.1")
    with caplog.at_level(logging.WARNING):
        result = train_grpo(cfg, progress=False)
    logged = [h for h in result["history"] if "loss" in h and "train_runtime" not in h]
    assert [h["step"] for h in logged] == [1, 2]
    for h in logged:
        assert h["zero_spread_groups"] == 1.0 and h["loss"] == 0.0 and h["grad_norm"] == 0.0, h
        assert all(math.isfinite(v) for v in h.values()) and h["nan_skipped"] == 0
    said = _said(caplog)
    assert len(said) == 1, said  # once, though two logged steps had no spread
    assert said[0].startswith("step 1: ") and "grpo.max_new_tokens 4: a budget too short for one object" in said[0]
    start, end = load_model(trained_checkpoint)[0].state_dict(), load_model(result["final"])[0].state_dict()
    assert all(torch.equal(start[k], end[k]) for k in start)  # a zero gradient moved nothing


def test_rollouts_that_differ_say_nothing_of_spread(grpo_config, caplog):
    with caplog.at_level(logging.WARNING):
        history = train_grpo(grpo_config("training.max_steps=1"), progress=False)["history"]
    assert history[0]["zero_spread_groups"] < 1 and _said(caplog) == []
