"""Language-model loss split by span (teacher answers vs the student answer), computed only where supervised.

Only positions whose next token is supervised go through the LM head, so a 150k-vocabulary logits tensor is
never built for the (much longer) prompt and image tokens. The loss keeps each span's sum and token count, so
a caller can divide by the effective batch's counts instead of this batch's (docs/training_loss_scale.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bbuvl.encode.chat import IGNORE_INDEX, SPAN_STUDENT, SPAN_TEACHER


@dataclass
class SpanLoss:
    """Summed token cross-entropy per span and the token counts behind each sum."""

    teacher_sum: torch.Tensor  # scalar; 0 (still in the graph) when the batch has no teacher tokens
    student_sum: torch.Tensor
    n_teacher: int
    n_student: int

    @property
    def teacher(self) -> torch.Tensor:
        """Mean cross-entropy of this batch's teacher tokens (0 without any)."""
        return self.teacher_sum / max(self.n_teacher, 1)

    @property
    def student(self) -> torch.Tensor:
        """Mean cross-entropy of this batch's student tokens (0 without any)."""
        return self.student_sum / max(self.n_student, 1)


def supervised_positions(labels: torch.Tensor) -> torch.Tensor:
    """Boolean mask `[B, L]` of positions whose NEXT token is supervised (causal shift)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return mask


def span_token_counts(labels: torch.Tensor, span_ids: torch.Tensor) -> tuple[int, int]:
    """Supervised (teacher, student) tokens of a collated batch; labels / span_ids: [B, L], unshifted."""
    spans = span_ids[:, 1:][labels[:, 1:] != IGNORE_INDEX]
    return int((spans == SPAN_TEACHER).sum()), int((spans == SPAN_STUDENT).sum())


def span_lm_loss(hidden: torch.Tensor, lm_head: torch.nn.Module, labels: torch.Tensor, span_ids: torch.Tensor) -> SpanLoss:
    """Token cross-entropy of the teacher and the student spans, summed per span.

    hidden: [B, L, H] last hidden states; labels / span_ids: [B, L] (unshifted, as the collator builds them).
    """
    pos = supervised_positions(labels)
    targets = labels[:, 1:][pos[:, :-1]]  # [N]
    spans = span_ids[:, 1:][pos[:, :-1]]  # [N]
    logits = lm_head(hidden[pos]).float()  # [N, V]
    ce = F.cross_entropy(logits, targets, reduction="none")  # [N]
    is_t, is_s = spans == SPAN_TEACHER, spans == SPAN_STUDENT
    # An empty selection sums to a 0 that is still in the graph, so backward works when a span is missing.
    return SpanLoss(ce[is_t].sum(), ce[is_s].sum(), int(is_t.sum()), int(is_s.sum()))
