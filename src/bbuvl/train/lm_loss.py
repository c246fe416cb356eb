"""Language-model loss split by span (teacher answers vs the student answer), computed only where supervised.

Only positions whose next token is supervised go through the LM head, so a 150k-vocabulary logits tensor is
never built for the (much longer) prompt and image tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bbuvl.train.chat import IGNORE_INDEX, SPAN_STUDENT, SPAN_TEACHER


@dataclass
class SpanLoss:
    """Mean token cross-entropy per span and the token counts behind each mean."""

    teacher: torch.Tensor  # scalar; 0 when the batch has no teacher tokens
    student: torch.Tensor
    n_teacher: int
    n_student: int


def supervised_positions(labels: torch.Tensor) -> torch.Tensor:
    """Boolean mask `[B, L]` of positions whose NEXT token is supervised (causal shift)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return mask


def span_lm_loss(hidden: torch.Tensor, lm_head: torch.nn.Module, labels: torch.Tensor, span_ids: torch.Tensor) -> SpanLoss:
    """Token-mean cross-entropy of the teacher and the student spans.

    hidden: [B, L, H] last hidden states; labels / span_ids: [B, L] (unshifted, as the collator builds them).
    """
    pos = supervised_positions(labels)
    targets = labels[:, 1:][pos[:, :-1]]  # [N]
    spans = span_ids[:, 1:][pos[:, :-1]]  # [N]
    logits = lm_head(hidden[pos]).float()  # [N, V]
    ce = F.cross_entropy(logits, targets, reduction="none")  # [N]
    zero = hidden.new_zeros((), dtype=torch.float32)

    def mean(mask: torch.Tensor) -> torch.Tensor:
        n = int(mask.sum())
        return ce[mask].sum() / n if n else zero + 0.0 * ce.sum()  # keep the graph connected when a span is empty

    is_t, is_s = spans == SPAN_TEACHER, spans == SPAN_STUDENT
    return SpanLoss(mean(is_t), mean(is_s), int(is_t.sum()), int(is_s.sum()))
