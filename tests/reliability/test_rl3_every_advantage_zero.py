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


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
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
        assert h["cut_answers"] == 1.0 and h["answer_objects"] == 0.0, h  # the budget held no object: every answer `[]`
        assert all(math.isfinite(v) for v in h.values()) and h["nan_skipped"] == 0
    said = _said(caplog)
    assert len(said) == 1, said  # once, though two logged steps had no spread
    assert said[0].startswith("step 1: ") and "grpo.max_new_tokens 4: a budget too short for one object" in said[0]
    assert "their advantages are 0, so the reward taught nothing (only the KL term, grpo.beta, moved the policy)" \
        in said[0]
    start, end = load_model(trained_checkpoint)[0].state_dict(), load_model(result["final"])[0].state_dict()
    assert all(torch.equal(start[k], end[k]) for k in start)  # a zero gradient moved nothing


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_free_rollouts_all_cut_before_they_parse_are_said_to_be_cut(grpo_config, caplog):
    """Without the grammar a short budget leaves no answer `[]` but text that does not parse, each earning 0."""
    cfg = grpo_config("grpo.constrained=false", "grpo.max_new_tokens=3", "grpo.rewards.user=0",
                      "grpo.rewards.user_function=null", "training.max_steps=1")
    with caplog.at_level(logging.WARNING):
        (h, *_) = train_grpo(cfg, progress=False)["history"]
    (said,) = _said(caplog)
    assert h["reward"] == 0.0 and h["answer_length"] == 3 and h["cut_answers"] == 1.0
    assert "their advantages are 0, so the loss and its gradient are 0" in said  # grpo.beta 0: no KL term either
    assert "Answers averaged 3.0 tokens of grpo.max_new_tokens 3: a budget too short for one object cuts every answer " \
           "before it parses (raise it)" in said, said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_rollouts_that_differ_say_nothing_of_spread(grpo_config, caplog):
    with caplog.at_level(logging.WARNING):
        history = train_grpo(grpo_config("training.max_steps=1"), progress=False)["history"]
    assert history[0]["zero_spread_groups"] < 1 and _said(caplog) == []


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_photos_with_no_parts_all_answered_right_are_said_to_leave_nothing_to_learn_not_a_short_budget(
        grpo_config, small_dataset, tmp_path, caplog):
    """Every rollout of a photo with no parts writes `[]` under one token of budget, and earns the whole reward: the
    budget is not what stops the learning."""
    import json

    no_parts = tmp_path / "no_parts.jsonl"
    records = [json.loads(line) for line in (small_dataset / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    no_parts.write_text("".join(json.dumps({**r, "objects": [], "images": [str(small_dataset / p) for p in r["images"]]},
                                           ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    cfg = grpo_config(f"data.train={no_parts}", "grpo.max_new_tokens=1", "grpo.rewards.user=0",
                      "grpo.rewards.user_function=null", "training.max_steps=1")
    with caplog.at_level(logging.WARNING):
        train_grpo(cfg, progress=False)
    (said,) = _said(caplog)
    assert "mean reward 1.5" in said and "Every answer earned the whole reward" in said and "budget" not in said, said
