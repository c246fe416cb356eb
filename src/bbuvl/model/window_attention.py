"""The vision towers' attention within windows (or images) as one SDPA call per window size, not one per window
(docs/design.md, "Vision windows in one call").

Qwen's vision towers attend within blocks of the patch sequence given by `cu_seqlens`: Qwen2.5-VL within windows
of 8 x 8 patches in most blocks, every family within each image. With SDPA, transformers runs one attention call
per block, so a 1148 x 868 photo costs some 88 calls in each windowed layer, and a batch of 8 photos 8 calls in
each whole-image layer; on an H200, Qwen2.5-VL-3B trained at 4% MFU and its head-mode prediction gained nothing
from batch 8 (docs/gpu.md, "Measured on an H200"). Blocks of equal length are independent attention problems of
one shape, so they stack into one batched call: a photo's windows come in at most four lengths (whole windows,
the right edge's, the bottom edge's, the corner), and the photos of a batch resized to one frame in one.

The swap changes the attention module's class only: the weights, their names and what `save_pretrained` writes
stay the same. Flash-attention (one varlen call already) and eager attention keep transformers' own path.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# The vision attention classes whose forward is the one below: qkv, rotary embedding, attention within the
# `cu_seqlens` blocks, proj (transformers 5.x, the same in the three families).
_VISION_ATTENTION = {
    "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl": "Qwen2_5_VLVisionAttention",
    "transformers.models.qwen3_vl.modeling_qwen3_vl": "Qwen3VLVisionAttention",
    "transformers.models.qwen3_5.modeling_qwen3_5": "Qwen3_5VisionAttention",
}
_BATCHED: dict[type, type] = {}


def blocks_by_length(cu_seqlens: torch.Tensor) -> dict[int, list[int]]:
    """The attention blocks `cu_seqlens` `[N + 1]` bounds, as each length's block starts, in order."""
    bounds = cu_seqlens.tolist()
    starts: dict[int, list[int]] = {}
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b > a:
            starts.setdefault(b - a, []).append(a)
    return starts


def block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, scale: float,
                    dropout: float = 0.0) -> torch.Tensor:
    """Bidirectional attention within each block; q / k / v `[S, H, D]`, the blocks' bounds `cu_seqlens` -> `[S, H, D]`."""
    parts, order = [], []
    for length, starts in blocks_by_length(cu_seqlens).items():
        n, first = len(starts), starts[0]
        if starts == list(range(first, first + n * length, length)):  # back to back: a view, no copy
            qs, ks, vs = (t[first:first + n * length].unflatten(0, (n, length)).transpose(1, 2) for t in (q, k, v))
            idx = torch.arange(first, first + n * length, device=q.device)
        else:
            idx = (torch.tensor(starts, device=q.device)[:, None] + torch.arange(length, device=q.device)).reshape(-1)
            qs, ks, vs = (t[idx].unflatten(0, (n, length)).transpose(1, 2) for t in (q, k, v))  # [n, H, L, D]
        out = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=dropout, scale=scale)  # [n, H, L, D]
        parts.append(out.transpose(1, 2).reshape(n * length, *q.shape[1:]))
        order.append(idx)
    if len(parts) == 1 and parts[0].shape[0] == q.shape[0]:
        return parts[0]  # one run of equal blocks covering the sequence in order
    return torch.cat(parts)[torch.argsort(torch.cat(order))]


def _batched_forward(self: nn.Module, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
                     position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None, max_seqlen: int | None = None,
                     **kwargs: Any) -> torch.Tensor:
    """hidden_states `[S, C]` -> `[S, C]`, as the family's forward computes it with SDPA."""
    if self.config._attn_implementation != "sdpa":
        return super(type(self), self).forward(hidden_states, cu_seqlens, position_embeddings=position_embeddings,
                                               max_seqlen=max_seqlen, **kwargs)
    length = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)  # [S, H, D]
    cos, sin = position_embeddings
    q, k = sys.modules[type(self).__mro__[1].__module__].apply_rotary_pos_emb_vision(q, k, cos, sin)
    out = block_attention(q, k, v, cu_seqlens, self.scaling, self.attention_dropout if self.training else 0.0)
    return self.proj(out.reshape(length, -1))


def _vision_attention_classes() -> tuple[type, ...]:
    classes = []
    for module, name in _VISION_ATTENTION.items():
        loaded = sys.modules.get(module)  # a family whose modeling file was never imported has no module to swap
        if loaded is not None and hasattr(loaded, name):
            classes.append(getattr(loaded, name))
    return tuple(classes)


def use_batched_window_attention(model: nn.Module) -> int:
    """Give every vision attention module of `model` the batched forward (in place); returns how many."""
    classes = _vision_attention_classes()
    swapped = 0
    for module in model.modules():
        cls = type(module)
        if cls in classes:
            if cls not in _BATCHED:
                _BATCHED[cls] = type(f"Batched{cls.__name__}", (cls,), {"forward": _batched_forward})
            module.__class__ = _BATCHED[cls]
            swapped += 1
    return swapped
