"""The evaluation's loss terms, the same numbers on every rank: what `eval_loss_bbox` and the others log, and what
early stopping and the over-fit monitor read on each rank.

Each rank used to average the batches it evaluated itself and log that over HF's `eval_loss` (the `loss` term
included): under torchrun the log held the first rank's half of the validation photos, and each rank's early stopping
judged its own half, so one rank could stop while the other went on to its next step and waited there for ever.
The terms now go through HF's own gather (accelerate's `gather_for_metrics`, which drops the photos the last batches
repeat to even the ranks out), one row a photo as HF's `eval_loss` does (docs/training_loss_scale.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bbuvl.encode.loss_terms import LossTerms

# The weighted total is HF's own `eval_loss`, gathered the same way
NAMES = tuple(name for name in LossTerms.names() if name != "loss")


class EvalTerms:
    """The loss terms of one evaluation's batches, gathered from every rank, each batch's term once a photo."""

    def __init__(self) -> None:
        self.rows: list[torch.Tensor] = []

    def add(self, parts: LossTerms, photos: int, gather: Callable[[torch.Tensor], torch.Tensor],
            device: torch.device) -> None:
        """Add a batch's terms as `photos` rows (HF's count for the batch), gathered over the ranks by `gather`."""
        computed = {k: float(v.detach().float().item()) for k, v in parts.computed().items()}
        row = [computed.get(k, 0.0) for k in NAMES] + [float(k in computed) for k in NAMES]
        rows = torch.tensor([row], dtype=torch.float64, device=device).repeat(photos, 1)
        self.rows.append(gather(rows).cpu())

    def means(self) -> dict[str, float]:
        """Each term some batch computed, averaged over the gathered rows that hold it (`eval_` names); then none
        are held."""
        if not self.rows:
            return {}
        rows = torch.cat(self.rows)
        self.rows = []
        n = len(NAMES)
        values, present = rows[:, :n], rows[:, n:]
        counts = present.sum(dim=0)
        sums = (values * present).sum(dim=0)
        return {f"eval_{k}": float(sums[i] / counts[i]) for i, k in enumerate(NAMES) if counts[i] > 0}
