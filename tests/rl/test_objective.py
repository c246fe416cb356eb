"""The GRPO objective (rl/objective.py) against values computed by hand.

The case: two rollouts, advantages +1 and -1, clip 0.2 both ways, beta 0.1.
    rollout 0: p = 0.5, 0.25 (old 0.4, 0.25; ref 0.4, 0.5): ratios 1.25 (clipped to 1.2, A > 0: clip active), 1.0
    rollout 1: p = 0.5 and one padding token (old 0.8; ref 0.5): ratio 0.625 (clipped to 0.8, A < 0: active)
    pg:   -1.2, -1.0, +0.8
    k3:   0.8 - ln 0.8 - 1 = 0.0231436,  2 - ln 2 - 1 = 0.3068528,  0
    l:    -1.1976856, -0.9693147, 0.8    (sum -1.3670004)
    dapo:    sum / 3 tokens                              = -0.4556668
    grpo:    (mean(-1.1976856, -0.9693147) + 0.8) / 2    = -0.1417501
    dr_grpo: sum / (2 answers x 4 max tokens)            = -0.1708750
"""

import math

import pytest
import torch

from bbuvl.rl.objective import StepCounts, group_advantages, grpo_loss

LN = math.log


def case():
    logp = torch.tensor([[LN(0.5), LN(0.25)], [LN(0.5), 0.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[LN(0.4), LN(0.25)], [LN(0.8), 0.0]], dtype=torch.float64)
    ref = torch.tensor([[LN(0.4), LN(0.5)], [LN(0.5), 0.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1], [1, 0]])
    return logp, old, ref, torch.tensor([1.0, -1.0], dtype=torch.float64), mask


@pytest.mark.parametrize("loss_type, expected", [("dapo", -0.4556668), ("grpo", -0.1417501), ("dr_grpo", -0.1708750)])
def test_each_loss_variant_equals_its_hand_computed_value(loss_type, expected):
    logp, old, ref, adv, mask = case()
    out = grpo_loss(logp, old, ref, adv, mask, StepCounts(answers=2, tokens=3, max_new_tokens=4), loss_type,
                    epsilon_low=0.2, epsilon_high=0.2, beta=0.1)
    assert float(out.loss.detach()) == pytest.approx(expected, abs=1e-6)
    assert float(out.clipped_tokens) == 2 and float(out.tokens) == 3
    assert float(out.kl_sum) == pytest.approx(0.8 - LN(0.8) - 1 + 2 - LN(2) - 1, abs=1e-6)


def test_a_clipped_token_passes_only_the_kl_gradient():
    logp, old, ref, adv, mask = case()
    grpo_loss(logp, old, ref, adv, mask, StepCounts(2, 3, 4), "dapo", 0.2, 0.2, 0.1).loss.backward()
    # d/dlogp of k3 = 1 - exp(ref - logp); the unclipped token also gets -ratio * A = -1.
    expected = torch.tensor([[0.1 * (1 - 0.8) / 3, (-1 + 0.1 * (1 - 2)) / 3], [0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(logp.grad, expected, atol=1e-9)


def test_without_a_reference_the_kl_is_zero_and_beta_changes_nothing():
    logp, old, _, adv, mask = case()
    a = grpo_loss(logp, old, None, adv, mask, StepCounts(2, 3, 4), "dapo", 0.2, 0.2, beta=0.5)
    assert float(a.kl_sum) == 0.0 and a.loss.item() == pytest.approx((-1.2 - 1.0 + 0.8) / 3)


def test_micro_batches_add_up_to_the_whole_step():
    logp, old, ref, adv, mask = case()
    counts = StepCounts(2, 3, 4)
    for loss_type in ("grpo", "dr_grpo", "dapo"):
        whole = grpo_loss(logp, old, ref, adv, mask, counts, loss_type, 0.2, 0.2, 0.1).loss
        parts = sum(grpo_loss(logp[i:i + 1], old[i:i + 1], ref[i:i + 1], adv[i:i + 1], mask[i:i + 1], counts, loss_type,
                              0.2, 0.2, 0.1).loss for i in range(2))
        assert parts.item() == pytest.approx(whole.item(), abs=1e-12), loss_type


def test_advantages_are_relative_to_each_photos_group():
    rewards = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.2, 0.2]])
    a = group_advantages(rewards)
    assert torch.allclose(a[0], torch.tensor([0.5, -0.5, 0.0]) / (0.5 + 1e-4))
    assert torch.equal(a[1], torch.zeros(3))  # no spread, no signal
    assert torch.allclose(group_advantages(rewards, scale=False)[0], torch.tensor([0.5, -0.5, 0.0]))
