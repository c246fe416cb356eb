"""Box conversions, IoU, GIoU and NMS as pure tensor functions (no torchvision: it does not import on
our CPU machines, see docs/design.md, "No torchvision dependency").

Boxes are `[..., 4]` tensors, either `cxcywh` (centre x, centre y, width, height) or `xyxy`
(left, top, right, bottom). The detection head works in normalised coordinates of the student image,
but nothing here assumes a range.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

BoxFormat = Literal["cxcywh", "xyxy"]


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """`[..., 4]` cx, cy, w, h -> `[..., 4]` x1, y1, x2, y2."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """`[..., 4]` x1, y1, x2, y2 -> `[..., 4]` cx, cy, w, h."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def to_xyxy(boxes: Tensor, box_format: BoxFormat) -> Tensor:
    """`[..., 4]` boxes in `box_format` -> `[..., 4]` xyxy."""
    if box_format == "xyxy":
        return boxes
    if box_format == "cxcywh":
        return box_cxcywh_to_xyxy(boxes)
    raise ValueError(f"box_format must be 'cxcywh' or 'xyxy', got {box_format!r}")


def box_area(boxes: Tensor) -> Tensor:
    """`[N, 4]` xyxy -> `[N]` areas (negative sides count as zero)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """`[N, 4]`, `[M, 4]` xyxy -> intersection and union areas, both `[N, M]`."""
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter, area1[:, None] + area2[None, :] - inter


def box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise IoU: `[N, 4]`, `[M, 4]` xyxy -> `[N, M]` in [0, 1] (0 when both boxes are empty)."""
    inter, union = _inter_union(boxes1, boxes2)
    return inter / union.clamp(min=eps)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Pairwise GIoU (Rezatofighi et al. 2019): `[N, 4]`, `[M, 4]` xyxy -> `[N, M]` in [-1, 1].

    Unlike DETR we do not assert x2 >= x1: early in training a regressed box may be inverted, and an
    assert would kill a multi-day run; inverted sides count as zero, which keeps the value in range.
    """
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / union.clamp(min=eps)
    lt = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    hull = wh[..., 0] * wh[..., 1]
    return iou - (hull - union) / hull.clamp(min=eps)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float, classes: Tensor | None = None) -> Tensor:
    """Greedy non-maximum suppression: `[N, 4]` xyxy, `[N]` scores -> `[K]` kept indices, best first.

    A box is dropped when its IoU with a better-scoring kept box exceeds `iou_threshold`. With
    `classes` (`[N]` ints) only boxes of the same class suppress each other.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    overlap = box_iou(boxes[order], boxes[order]) > iou_threshold
    if classes is not None:
        cls = classes[order]
        overlap &= cls[:, None] == cls[None, :]
    # One CPU pass over a precomputed [N, N] matrix: N is at most a few hundred queries per image.
    overlap = overlap.cpu()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlap[i]
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]
