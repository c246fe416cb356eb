"""Grounding attention: supervise where the answer looks while it writes a box (a training-only loss).

To write `x1` of an object, generate mode must first gather the object's position from its image tokens
(the vision positions put it in their values, model/vision_positions.py) and then spell it in digits. Trained
on the digits alone, a from-scratch model learns that route only in part (docs/localisation.md). This term
tells it where to look: at every position that predicts a digit of an object's box, the first
`loss.grounding_heads` query heads of every softmax-attention layer of the LLM are pulled towards the object's
image tokens, each token weighted by how much of its cell the box covers (the coverage is the target
distribution; the loss is its cross-entropy with the head's attention over the whole sequence). Coverage
weights make the attended positions average to the box's centre at finer than one token. The other heads are
left free, and prediction is unchanged (the same model, the same answers' format).

The attention probabilities are read from the eager attention implementation (`model.attn_implementation:
eager`, which the config requires with this term); sdpa and flash attention never form them.
docs/grpo.md ("Teaching the answer where to look", "Generate mode localises") has why and what it measured.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from bbuvl.model.coordinate_loss import predicts_coordinate

EPS = 1e-6  # keeps log() finite where a head gives a covered token no attention at all


def attention_layers(text_model: nn.Module) -> list[nn.Module]:
    """The LLM's softmax-attention modules, first layer first (Qwen3.5's linear-attention layers have none)."""
    return [layer.self_attn for layer in text_model.layers if hasattr(layer, "self_attn")]


class AttentionCapture:
    """Forward hooks on the LLM's attention modules that keep the first `heads` heads' probabilities
    `[B, heads, L, L]` of each layer while `recording()` is active."""

    def __init__(self, heads: int) -> None:
        self.heads = heads
        self._on = False
        self.maps: list[torch.Tensor] = []

    @contextmanager
    def recording(self) -> Iterator["AttentionCapture"]:
        """Record inside the block; the maps are dropped on leaving (no graph outlives a step)."""
        self._on, self.maps = True, []
        try:
            yield self
        finally:
            self._on, self.maps = False, []

    def hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        """Forward hook: keep the layer's attention probabilities (its output's second item)."""
        if not self._on:
            return
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise RuntimeError("loss.grounding_attention needs attention probabilities, but an attention layer returned "
                               "none: set model.attn_implementation: eager")
        self.maps.append(weights[:, : self.heads])

    def attach(self, text_model: nn.Module) -> list[Any]:
        """Register the hook on every softmax-attention layer of the LLM; returns the removable handles."""
        layers = attention_layers(text_model)
        if not layers:
            raise ValueError("loss.grounding_attention: this language model has no softmax-attention layer to supervise")
        return [layer.register_forward_hook(self.hook) for layer in layers]


def cell_coverage(box: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """`[rows * cols]` share of each cell of a rows x cols grid (raster order) that `box` (xyxy in [0, 1]) covers."""
    x1, y1, x2, y2 = (box * box.new_tensor([cols, rows, cols, rows])).unbind(-1)
    c = torch.arange(cols, device=box.device, dtype=box.dtype)
    r = torch.arange(rows, device=box.device, dtype=box.dtype)
    over_x = (torch.minimum(c + 1, x2) - torch.maximum(c, x1)).clamp(min=0)  # [cols]
    over_y = (torch.minimum(r + 1, y2) - torch.maximum(r, y1)).clamp(min=0)  # [rows]
    return (over_y[:, None] * over_x[None, :]).reshape(-1)


def grounding_attention_sum(maps: list[torch.Tensor], coord_marks: torch.Tensor, sample_index: torch.Tensor,
                            vision_mask: torch.Tensor, grid_hw: torch.Tensor,
                            coord_boxes: list[torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of each supervised head's attention with its object's coverage, summed over the positions that
    predict a coordinate digit and averaged over layers and heads.

    maps: per layer `[B, h, L, L]` attention probabilities; coord_marks / sample_index / vision_mask: `[B, L]`
    (vision_mask: the student photo's image tokens, raster order); grid_hw: `[S, 2]` their merged grid;
    coord_boxes: S x `[N_s, 4]`. A box that covers no cell (degenerate) is skipped. A 0 still in the graph when
    nothing is supervised.
    """
    total = 0.0 * maps[0].sum().float()
    queries_at = predicts_coordinate(coord_marks)
    for s, boxes in enumerate(coord_boxes):
        in_s = sample_index == s
        rows, cols = torch.nonzero(queries_at & in_s, as_tuple=True)  # positions that predict a digit
        if rows.numel() == 0:
            continue
        b = int(rows[0])  # one sample lies in one row, padded or packed
        keys = torch.nonzero(in_s[b] & vision_mask[b]).flatten()  # [K], raster order
        grid_rows, grid_cols = (int(v) for v in grid_hw[s])
        if keys.numel() != grid_rows * grid_cols:
            raise ValueError(f"sample {s}: {keys.numel()} image tokens but a {grid_rows}x{grid_cols} grid")
        objects = coord_marks[b, cols + 1] // 4  # [Q] which box each position writes
        cover = torch.stack([cell_coverage(box.to(maps[0].device, torch.float32), grid_rows, grid_cols) for box in boxes])
        target = cover / cover.sum(-1, keepdim=True).clamp(min=EPS)  # [N_s, K]
        valid = cover.sum(-1)[objects] > 0  # [Q]
        if not valid.any():
            continue
        queries, objects = cols[valid], objects[valid]  # position t predicts the digit at t + 1
        # Only the supervised rows and columns of each layer's map are gathered: no copy of the whole maps.
        probs = torch.stack([m[b][:, queries][..., keys] for m in maps]).float()  # [layers, h, Q, K]
        ce = -(target[objects] * (probs + EPS).log()).sum(-1)  # [layers, h, Q]
        total = total + ce.mean(dim=(0, 1)).sum()
    return total
