"""Hungarian matching between the head's queries and an image's ground-truth boxes (DETR).

The cost of giving target j to query i is a weighted sum of a class cost (how sure the query is
that an object is there, focal-style as in Deformable DETR so that matching and the objectness loss
agree), the L1 distance of the boxes in the head's box format, and -GIoU. Each target gets the query
of the cheapest one-to-one assignment (scipy's `linear_sum_assignment`).
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from bbuvl.config import DetectionConfig, LossConfig
from bbuvl.model.box_ops import BoxFormat, generalized_box_iou, to_xyxy


def focal_class_cost(logits: Tensor, alpha: float, gamma: float, eps: float = 1e-8) -> Tensor:
    """`[Q]` objectness logits -> `[Q]` cost of calling each query an object (lower = more confident)."""
    p = logits.float().sigmoid()
    pos = alpha * (1 - p) ** gamma * -(p + eps).log()
    neg = (1 - alpha) * p**gamma * -(1 - p + eps).log()
    return pos - neg


class HungarianMatcher(nn.Module):
    """One-to-one assignment of targets to queries, minimising class + L1 + GIoU cost."""

    def __init__(
        self,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        box_format: BoxFormat = "cxcywh",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("all matching costs are 0: set loss.match_cost_class, match_cost_bbox or match_cost_giou")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.box_format: BoxFormat = box_format
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma

    @classmethod
    def from_config(cls, loss: LossConfig, detection: DetectionConfig) -> "HungarianMatcher":
        """The matcher a run's config describes."""
        return cls(
            loss.match_cost_class, loss.match_cost_bbox, loss.match_cost_giou,
            detection.box_format, loss.focal_alpha, loss.focal_gamma,
        )

    def cost_matrix(self, pred_boxes: Tensor, pred_logits: Tensor, tgt_boxes: Tensor) -> Tensor:
        """`[Q, 4]` boxes, `[Q]` logits, `[N, 4]` targets (all in box_format) -> `[Q, N]` costs."""
        pred_boxes, tgt_boxes = pred_boxes.float(), tgt_boxes.float()
        cost_bbox = torch.cdist(pred_boxes, tgt_boxes, p=1)
        cost_giou = -generalized_box_iou(to_xyxy(pred_boxes, self.box_format), to_xyxy(tgt_boxes, self.box_format))
        cost_class = focal_class_cost(pred_logits, self.focal_alpha, self.focal_gamma)[:, None]
        return self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou

    @torch.no_grad()
    def forward(
        self, pred_boxes: Tensor, pred_logits: Tensor, targets: list[dict], valid: Tensor | None = None
    ) -> list[tuple[Tensor, Tensor]]:
        """Match a batch: `[B, Q, 4]` boxes, `[B, Q]` logits, B dicts with "boxes" `[Ni, 4]`.

        `valid` `[B, Q]` (optional): only these queries may be matched (padding of a ragged batch).

        Returns B pairs `(pred_idx, tgt_idx)` of int64 tensors of length min(Q, Ni): query
        `pred_idx[k]` is assigned target `tgt_idx[k]`. With more targets than queries, the extra
        targets stay unmatched (they still count in the loss normalisation).
        """
        if len(targets) != pred_boxes.shape[0]:
            raise ValueError(f"{len(targets)} target dicts for a batch of {pred_boxes.shape[0]} predictions")
        indices = []
        for b, target in enumerate(targets):
            tgt_boxes = target["boxes"]
            if len(tgt_boxes) == 0:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty))
                continue
            queries = torch.arange(pred_boxes.shape[1]) if valid is None else valid[b].nonzero().flatten().cpu()
            q = queries.to(pred_boxes.device)
            cost = self.cost_matrix(pred_boxes[b, q], pred_logits[b, q], tgt_boxes.to(pred_boxes.device)).cpu()
            if not torch.isfinite(cost).all():
                raise ValueError(f"image {b} of the batch: non-finite matching cost (NaN/Inf predictions or targets)")
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append((queries[torch.as_tensor(rows, dtype=torch.int64)], torch.as_tensor(cols, dtype=torch.int64)))
        return indices
