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

The model attends with whatever implementation it was loaded with (sdpa, flash attention, eager): none of them
needs to form the attention probabilities. A forward pre-hook keeps each attention layer's inputs (the normed
hidden states and the rotary cos / sin), and only the supervised rows are computed again from them: the queries of
the supervised heads at the positions that predict a digit, against the keys of their sample up to that position,
projected and rotated by the layer's own modules and rotary function. That is `[heads, Q, n]` per layer and sample
instead of eager's `[batch, all heads, L, L]`. docs/grpo.md ("Grounding without eager attention") has the memory
and time measured, and ("Teaching the answer where to look", "Generate mode localises") why the term exists.

When the batch's shared prompt is read once (model/shared_prefix.py), each layer is called twice: on the prompt as a
batch of one, then on every row's rest. Both calls are kept, and a row's positions are read from the prompt's call
before the prompt's end and from the rest's after it, so the rows are the same as a full pass's.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from bbuvl.model.coordinate_loss import predicts_coordinate

EPS = 1e-6  # keeps log() finite where a head gives a covered token no attention at all

# (row b, the sample's positions in that row [n] ascending, query positions [Q], key positions [K]) ->
# `[layers, heads, Q, K]` attention probabilities of the supervised heads, each row a softmax over the sample's
# positions up to and including its query.
AttentionRows = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def attention_layers(text_model: nn.Module) -> list[nn.Module]:
    """The LLM's softmax-attention modules, first layer first (Qwen3.5's linear-attention layers have none)."""
    return [layer.self_attn for layer in text_model.layers if hasattr(layer, "self_attn")]


@dataclass
class LayerInputs:
    """What one attention layer was called with: the module, its normed input `[B, L, H]`, rotary cos / sin; with a
    shared prompt, `prefix` holds the prompt's call (`[1, P, H]`, cos / sin `[1, P, d]`) and these tensors the rest's
    (`[B, L - P, ...]`)."""

    module: nn.Module
    hidden: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    prefix: "LayerInputs | None" = None

    def at(self, b: int, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row `b`'s `(hidden [n, H], cos [n, d], sin [n, d])` at `positions` `[n]` (ascending) of the whole row."""
        if self.prefix is None:
            return self.hidden[b, positions], self.cos[b, positions], self.sin[b, positions]
        p = self.prefix.hidden.shape[1]
        first, rest = positions[positions < p], positions[positions >= p] - p
        return tuple(torch.cat([head[0, first], tail[b, rest]])  # type: ignore[return-value]
                     for head, tail in ((self.prefix.hidden, self.hidden), (self.prefix.cos, self.cos),
                                        (self.prefix.sin, self.sin)))


def _rotate(module: nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`x [heads, n, hd]` rotated at its positions' `cos / sin [n, d]` by the layer's own modelling file's function."""
    family = sys.modules[type(module).__module__]
    # The rotary function applies one cos / sin to queries and keys alike; queries and keys sit at different
    # positions here, so it is called for one of them at a time.
    rotated, _ = family.apply_rotary_pos_emb(x[None], x[None], cos[None], sin[None])
    return rotated[0]


def _heads(proj: torch.Tensor, n: int, head_dim: int, gated: bool) -> torch.Tensor:
    """A projection `[n, heads * hd]` (Qwen3.5's gated query: `[n, heads * 2 hd]`, query then gate per head) as
    `[n, heads, hd]`."""
    if gated:
        return proj.view(n, -1, 2 * head_dim)[..., :head_dim]
    return proj.view(n, -1, head_dim)


def supervised_rows(layer: LayerInputs, heads: int, b: int, segment: torch.Tensor, queries: torch.Tensor,
                    keys: torch.Tensor) -> torch.Tensor:
    """`[heads, Q, K]` attention probabilities of the layer's first `heads` query heads at `queries` over `keys`,
    as the layer's attention computes them: softmax over `segment` (the sample's positions) up to each query."""
    m = layer.module
    if getattr(m, "sliding_window", None):
        raise ValueError("loss.grounding_attention: sliding-window attention layers are not supported")
    segment = segment[segment <= queries.max()]  # later keys are masked for every supervised query
    head_dim, groups = int(m.head_dim), int(m.num_key_value_groups)
    h_q, cos_q, sin_q = layer.at(b, queries)
    h_k, cos_k, sin_k = layer.at(b, segment)
    q_out = m.q_proj(h_q)
    q = _heads(q_out, len(queries), head_dim, gated=q_out.shape[-1] == 2 * m.config.num_attention_heads * head_dim)
    q = q[:, :heads]
    kv = torch.arange(heads, device=q.device) // groups  # GQA: the key head each query head reads
    k = _heads(m.k_proj(h_k), len(segment), head_dim, gated=False)[:, : int(kv.max()) + 1]
    if hasattr(m, "q_norm"):  # Qwen3-VL, Qwen3.5: per-head RMSNorm before the rotation
        q, k = m.q_norm(q), m.k_norm(k)
    q = _rotate(m, q.transpose(0, 1), cos_q, sin_q)  # [heads, Q, hd]
    k = _rotate(m, k.transpose(0, 1), cos_k, sin_k)[kv]  # [heads, n, hd]
    scores = (q @ k.transpose(1, 2)).float() * m.scaling  # [heads, Q, n]
    scores = scores.masked_fill(segment[None, None, :] > queries[None, :, None], float("-inf"))
    probs = scores.softmax(-1)
    return probs[..., torch.searchsorted(segment, keys)]


class QueryKeyCapture:
    """Forward pre-hooks on the LLM's attention modules that keep their inputs while `recording()` is active, and
    compute the first `heads` heads' supervised attention rows from them (`rows`, an `AttentionRows`)."""

    def __init__(self, heads: int) -> None:
        self.heads = heads
        # Per thread, as model/patch_features.py's PatchCapture: one pass's layers are never another thread's.
        self._state = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        """What a copy keeps (GRPO's frozen reference deep-copies the model, rl/trainer.py): no thread's record."""
        return {"heads": self.heads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A copy records for its own threads, from none."""
        self.heads, self._state = state["heads"], threading.local()

    @property
    def layers(self) -> list[LayerInputs]:
        """The inputs this thread's recording kept, one per attention layer (none outside `recording()`)."""
        return getattr(self._state, "layers", [])

    @contextmanager
    def recording(self) -> Iterator["QueryKeyCapture"]:
        """Record this thread's pass inside the block; the inputs are dropped on leaving (no graph outlives a step)."""
        state = self._state
        state.on, state.layers = True, []
        try:
            yield self
        finally:
            state.on, state.layers = False, []

    def hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        """Forward pre-hook: keep the layer's hidden states and rotary cos / sin, for the calling thread."""
        if not getattr(self._state, "on", False):
            return  # also the recomputation of an activation-checkpointed layer during backward
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        cos, sin = kwargs["position_embeddings"]
        if cos.dim() != 3:
            raise ValueError(f"loss.grounding_attention: rotary cos of shape {tuple(cos.shape)}, expected [B, L, d]")
        if cos.shape[0] != hidden.shape[0]:  # one cos / sin for every row
            cos, sin = cos.expand(hidden.shape[0], -1, -1), sin.expand(hidden.shape[0], -1, -1)
        call = LayerInputs(module, hidden, cos, sin)
        first = next((i for i, layer in enumerate(self.layers) if layer.module is module), None)
        if first is None:
            self.layers.append(call)
        elif self.layers[first].prefix is None and self.layers[first].hidden.shape[0] == 1:
            call.prefix = self.layers[first]  # the shared prompt's call, then the rows' rest
            self.layers[first] = call
        else:
            raise RuntimeError("loss.grounding_attention: an attention layer was called more than twice in one pass")

    def attach(self, text_model: nn.Module) -> list[Any]:
        """Register the hook on every softmax-attention layer of the LLM; returns the removable handles."""
        layers = attention_layers(text_model)
        if not layers:
            raise ValueError("loss.grounding_attention: this language model has no softmax-attention layer to supervise")
        return [layer.register_forward_pre_hook(self.hook, with_kwargs=True) for layer in layers]

    def rows(self, b: int, segment: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """`[layers, heads, Q, K]`: the supervised rows of every recorded layer (an `AttentionRows`)."""
        if not self.layers:
            raise RuntimeError("loss.grounding_attention: no attention layer was recorded in this pass")
        return torch.stack([supervised_rows(layer, self.heads, b, segment, queries, keys) for layer in self.layers])

    def zero(self) -> torch.Tensor:
        """A 0 in the graph of the recorded pass (a batch with nothing to supervise still backpropagates)."""
        return 0.0 * self.layers[0].hidden.sum().float()


def cell_coverage(box: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """`[rows * cols]` share of each cell of a rows x cols grid (raster order) that `box` (xyxy in [0, 1]) covers."""
    x1, y1, x2, y2 = (box * box.new_tensor([cols, rows, cols, rows])).unbind(-1)
    c = torch.arange(cols, device=box.device, dtype=box.dtype)
    r = torch.arange(rows, device=box.device, dtype=box.dtype)
    over_x = (torch.minimum(c + 1, x2) - torch.maximum(c, x1)).clamp(min=0)  # [cols]
    over_y = (torch.minimum(r + 1, y2) - torch.maximum(r, y1)).clamp(min=0)  # [rows]
    return (over_y[:, None] * over_x[None, :]).reshape(-1)


def grounding_attention_sum(rows: AttentionRows, zero: torch.Tensor, coord_marks: torch.Tensor,
                            sample_index: torch.Tensor, vision_mask: torch.Tensor, grid_hw: torch.Tensor,
                            coord_boxes: list[torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of each supervised head's attention with its object's coverage, summed over the positions that
    predict a coordinate digit and averaged over layers and heads.

    rows: the supervised heads' attention rows (`QueryKeyCapture.rows`); zero: a 0 in the pass's graph, returned
    when nothing is supervised; coord_marks / sample_index / vision_mask: `[B, L]` (vision_mask: the student photo's
    image tokens, raster order); grid_hw: `[S, 2]` their merged grid; coord_boxes: S x `[N_s, 4]`. A box that covers
    no cell (degenerate) is skipped.
    """
    total = zero
    queries_at = predicts_coordinate(coord_marks)
    for s, boxes in enumerate(coord_boxes):
        in_s = sample_index == s
        found, cols = torch.nonzero(queries_at & in_s, as_tuple=True)  # positions that predict a digit
        if found.numel() == 0:
            continue
        b = int(found[0])  # one sample lies in one row, padded or packed
        segment = torch.nonzero(in_s[b]).flatten()
        keys = torch.nonzero(in_s[b] & vision_mask[b]).flatten()  # [K], raster order
        grid_rows, grid_cols = (int(v) for v in grid_hw[s])
        if keys.numel() != grid_rows * grid_cols:
            raise ValueError(f"sample {s}: {keys.numel()} image tokens but a {grid_rows}x{grid_cols} grid")
        objects = coord_marks[b, cols + 1] // 4  # [Q] which box each position writes
        cover = torch.stack([cell_coverage(box.to(zero.device, torch.float32), grid_rows, grid_cols) for box in boxes])
        target = cover / cover.sum(-1, keepdim=True).clamp(min=EPS)  # [N_s, K]
        valid = cover.sum(-1)[objects] > 0  # [Q]
        if not valid.any():
            continue
        queries, objects = cols[valid], objects[valid]  # position t predicts the digit at t + 1
        probs = rows(b, segment, queries, keys).float()  # [layers, h, Q, K]
        ce = -(target[objects] * (probs + EPS).log()).sum(-1)  # [layers, h, Q]
        total = total + ce.mean(dim=(0, 1)).sum()
    return total
