"""IoU of pixel boxes with numpy: the data checks, the synthetic scenes, few-shot labelling and evaluation share it.

Numpy rather than `bbuvl.model.box_ops` (torch, for the detection head's losses) so that data commands and
evaluation never import torch. Boxes are `[..., 4]` xyxy, as everywhere in `bbuvl.data`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def box_iou(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> np.ndarray:
    """Pairwise IoU: `[..., 4]` and `[..., 4]` xyxy boxes -> `[*a.shape[:-1], *b.shape[:-1]]` (0 where both are empty).

    Two single boxes give a 0-d array (`float(box_iou(a, b))`); `[N, 4]` and `[M, 4]` give `[N, M]`.
    Inverted sides count as zero.
    """
    a, b = (np.asarray(x, dtype=np.float64) for x in (a, b))
    a, b = (x.reshape(0, 4) if x.size == 0 else x for x in (a, b))  # an empty list is no boxes
    shape = a.shape[:-1] + b.shape[:-1]
    a, b = a.reshape(-1, 4), b.reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0).reshape(shape)
