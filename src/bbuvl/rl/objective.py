"""The GRPO objective: group-relative advantages, the clipped ratio, the KL to a reference, three normalisations.

For a photo with G rollouts o_1..o_G and rewards r_1..r_G (DeepSeekMath's GRPO):

    A_i        = (r_i - mean(r)) / (std(r) + eps)        (no division with scale_rewards false: Dr. GRPO)
    ratio_i,t  = exp(logp_i,t - old_logp_i,t)
    pg_i,t     = -min(ratio_i,t * A_i, clip(ratio_i,t, 1 - eps_low, 1 + eps_high) * A_i)
    kl_i,t     = exp(ref_i,t - logp_i,t) - (ref_i,t - logp_i,t) - 1      (k3, always >= 0)
    l_i,t      = pg_i,t + beta * kl_i,t

and the loss of an optimizer step is the tokens' l_i,t summed and divided one of three ways (docs/grpo.md,
"Loss variants"): `grpo` each answer's mean, averaged over answers (short answers weigh more per token);
`dr_grpo` (Understanding R1-Zero-Like Training) by answers x max_new_tokens, a constant; `dapo` (DAPO) by
the step's tokens. Every denominator is the whole optimizer step's (all micro-batches, all ranks), so the
micro-batches' losses add up to the step's: accumulation 2 x batch 1 is batch 2 (tests/rl/test_objective.py).

With one update per batch of rollouts (as here) old_logp is logp detached: the ratio is 1 in value and only
its gradient matters; the clip engages when rollouts are reused for several updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

STD_EPS = 1e-4  # TRL's: a group whose rewards barely differ gets advantages near 0, not a blow-up


def group_advantages(rewards: torch.Tensor, scale: bool = True) -> torch.Tensor:
    """rewards `[P, G]` (P photos, G rollouts each) -> advantages `[P, G]`, relative to each photo's group."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + STD_EPS)


@dataclass(frozen=True)
class StepCounts:
    """What an optimizer step's loss is divided by, counted over all its micro-batches and ranks."""

    answers: int  # rollouts in the step
    tokens: int  # their completion tokens
    max_new_tokens: int  # the rollouts' token limit (dr_grpo's constant)
    world_size: int = 1


@dataclass
class GrpoLoss:
    """One micro-batch's share of a step's loss (`loss`) and the sums its logs are made of."""

    loss: torch.Tensor  # scalar, in the graph
    kl_sum: torch.Tensor  # scalar, summed k3 KL over the tokens (0 without a reference)
    clipped_tokens: torch.Tensor  # scalar, tokens whose clip was active
    tokens: torch.Tensor  # scalar, completion tokens in the micro-batch


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None, advantages: torch.Tensor,
              mask: torch.Tensor, counts: StepCounts, loss_type: str = "dapo", epsilon_low: float = 0.2,
              epsilon_high: float = 0.2, beta: float = 0.0) -> GrpoLoss:
    """The micro-batch's share of the step's GRPO loss.

    logp / old_logp / ref_logp: `[R, T]` log-probabilities of the R rollouts' tokens (ref_logp None when beta is
    0); advantages: `[R]` (one an answer) or `[R, T']` (one a token, zero-padded; rl/answer_parts.py); mask:
    `[R, T]`, 1 on completion tokens, 0 on padding.
    """
    mask = mask.to(logp.dtype)
    if advantages.dim() == 1:
        adv = advantages[:, None].to(logp.dtype)  # [R, 1]
    else:  # [R, T']: padded to this micro-batch's longest answer, as the mask is
        adv = torch.zeros_like(logp)
        T = min(adv.shape[1], advantages.shape[1])
        adv[:, :T] = advantages[:, :T].to(logp.dtype)
    ratio = torch.exp(logp - old_logp)  # [R, T]
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * adv, clipped * adv)  # [R, T]
    kl = torch.zeros_like(logp)
    if ref_logp is not None:
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
    if loss_type == "grpo":
        per_answer = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # [R]
        loss = per_answer.sum() / max(counts.answers, 1)
    elif loss_type == "dr_grpo":
        loss = (per_token * mask).sum() / max(counts.answers * counts.max_new_tokens, 1)
    elif loss_type == "dapo":
        loss = (per_token * mask).sum() / max(counts.tokens, 1)
    else:
        raise ValueError(f"loss_type must be grpo, dr_grpo or dapo, got '{loss_type}'")
    active = ((ratio < 1 - epsilon_low) & (adv < 0)) | ((ratio > 1 + epsilon_high) & (adv > 0))
    return GrpoLoss(loss, (kl * mask).sum().detach(), (active.to(mask.dtype) * mask).sum().detach(), mask.sum().detach())
