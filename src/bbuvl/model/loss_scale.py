"""What each loss term is divided by: supervised tokens per span and target objects over the effective batch.

The effective batch is every micro-batch of one optimizer step on every rank. Each micro-batch's terms are
its sums (over tokens, over objects) divided by these counts, so the gradients summed over accumulation
micro-batches, and averaged over ranks once the trainer multiplies by the world size, are exactly those of
one large batch. Why these units and not others: docs/training_loss_scale.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from bbuvl.encode.collate import Batch
from bbuvl.model.lm_loss import span_token_counts


@dataclass(frozen=True)
class LossDenominators:
    """Counts over one optimizer step's effective batch (plain floats, so any model wrapper passes them on)."""

    teacher_tokens: float
    student_tokens: float
    objects: float
    world_size: int = 1  # ranks the counts were summed over, the ones DDP / ZeRO average gradients over

    @classmethod
    def count(cls, batches: list[Batch]) -> "LossDenominators":
        """Supervised tokens per span and target boxes in these collated micro-batches (this process only), but
        those of a batch of stand-ins (`Batch.stand_in`), which weighs nothing."""
        teacher = student = objects = 0
        for batch in batches:
            if batch.stand_in:
                continue
            t, s = span_token_counts(batch.labels, batch.span_ids)
            teacher, student = teacher + t, student + s
            objects += sum(len(boxes) for boxes in batch.det_boxes)
        return cls(float(teacher), float(student), float(objects))

    def all_reduce(self, device: torch.device | str) -> "LossDenominators":
        """The counts summed over all data-parallel ranks (a collective: every rank calls it once per step)."""
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return self
        counts = torch.tensor([self.teacher_tokens, self.student_tokens, self.objects], dtype=torch.float64, device=device)
        dist.all_reduce(counts)
        return LossDenominators(*counts.tolist(), world_size=dist.get_world_size())
