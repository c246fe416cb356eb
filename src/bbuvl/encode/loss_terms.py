"""`LossTerms`: every loss term of one forward pass, by name; its fields are exactly what training logs.

The model computes them (model/vlm.py: the language model's; model/detection_loss.py: the head's), the trainer
sums them over a step and logs each under its field name (train/trainer.py), and a non-finite step's dump
lists them. A new term is a new field here and the code that computes it (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class LossTerms:
    """Scalar tensors; `loss` is the weighted total that is optimised, the others are logged beside it.

    `number_token` is None when `loss.number_token` is 0, `coordinate` when `loss.coordinate_regression` is 0,
    `grounding` when `loss.grounding_attention` is 0. The detection terms are None when the run has no head or
    `training.detection_freeze_epochs` holds it back; they are unweighted except `loss_proposal`, which is already
    weighted and comes from two-stage heads only.
    """

    loss: torch.Tensor
    lm_teacher: torch.Tensor  # LM loss over the teacher answers' tokens
    lm_student: torch.Tensor  # LM loss over the student answer's tokens
    # Number-token loss on the answers' digits, each span weighted as its LM term; None at loss.number_token 0
    number_token: torch.Tensor | None = None
    # Smooth L1 of the coordinate read-out per student token; None at loss.coordinate_regression 0
    coordinate: torch.Tensor | None = None
    # Grounding attention's cross-entropy per student token; None at loss.grounding_attention 0
    grounding: torch.Tensor | None = None
    loss_bbox: torch.Tensor | None = None  # L1 of matched boxes, in the head's box format
    loss_giou: torch.Tensor | None = None  # 1 - GIoU of matched boxes
    loss_objectness: torch.Tensor | None = None  # focal (or quality focal) objectness over all queries
    loss_caption: torch.Tensor | None = None  # caption cross-entropy of matched queries
    loss_proposal: torch.Tensor | None = None  # two-stage proposals' box and objectness terms, weighted

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every term's name, in logging order."""
        return tuple(f.name for f in fields(cls))

    def computed(self) -> dict[str, torch.Tensor]:
        """The terms this pass computed, by name (None ones left out)."""
        return {name: value for name in self.names() if (value := getattr(self, name)) is not None}
