"""The check two GRPO tests make of a run's KL reference: its log-probabilities are the starting model's."""

from __future__ import annotations

import torch

from bbuvl.rl.rollouts import completion_logprobs, draw_rollouts


def assert_reference_is_the_start(run, trainer, start, cfg) -> None:
    """The reference's log-probabilities of two photos' rollouts equal those of `start` (the model as it was loaded),
    within 1e-6."""
    run.model.eval()
    drawn = draw_rollouts(run.predictor, run.train_dataset[:2], cfg.grpo, run.scorer, seed=7, step=0)
    batch = run.collator_for_rollouts(drawn.samples)
    reference = trainer.reference_logprobs(batch, drawn.allowed)
    with torch.no_grad():
        start_logp, mask = completion_logprobs(start, batch, cfg.grpo.temperature, drawn.allowed)
    assert torch.allclose(reference[mask], start_logp[mask], rtol=0, atol=1e-6), (reference - start_logp).abs().max()
