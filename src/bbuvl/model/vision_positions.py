"""Absolute 2-D positions added to the vision tokens the language model reads (docs/localisation.md).

A Qwen VL model carries *where* mainly through rotary positions: the vision tower's 2-D RoPE and the LLM's
mRoPE both act on attention scores, never on the values. A token that attends to "the yellow patch"
therefore reads back the patch's content but not its location, and the answer's coordinates have to
be reconstructed from attention patterns. Pretrained checkpoints learned that over billions of
grounding tokens; a model fine-tuned from scratch (or a small one) does not in any CPU budget
(docs/localisation.md has the measurements). Qwen3-VL added learned absolute position embeddings to
its vision tower for the same reason.

This module adds `W @ f(row, col)` to every merged vision token, where `f` is a fixed sinusoidal code of
the token's cell in *absolute* cells (one merged token: 28 px for Qwen2.5-VL, 32 for Qwen3-VL and Qwen3.5),
not of its fraction of the image, so the same cell reads the same whatever the photo's size (Qwen2.5-VL
answers in absolute model-frame pixels). `W` starts at zero, so a pretrained checkpoint's outputs are unchanged until training
moves it, and the projection costs `4 * num_frequencies * hidden` parameters (8k for the 3B).

It is attached as a forward hook on the vision tower, so every path that encodes an image (training,
the detection head's pass, `generate`'s prefill) sees the same embeddings without re-implementing
the VLM's forward.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

# Wavelengths from ~6 cells (fine enough to tell neighbouring cells apart) to ~1,600 cells (monotone over
# any frame the families read: 1280 max tokens is at most a few hundred cells on a side).
DEFAULT_FREQUENCIES = 16
MAX_RAD_PER_CELL = 1.0
MIN_RAD_PER_CELL = 1.0 / 256


def cell_frequencies(num: int = DEFAULT_FREQUENCIES) -> Tensor:
    """`[num]` angular frequencies in radians per cell, geometric from MAX_RAD_PER_CELL down to MIN_RAD_PER_CELL."""
    return torch.exp(torch.linspace(math.log(MAX_RAD_PER_CELL), math.log(MIN_RAD_PER_CELL), num))


def cell_code(grid_thw: Tensor, merge_size: int, frequencies: Tensor) -> Tensor:
    """Sinusoidal code of every merged token's (row, col), images concatenated in the vision tower's output order.

    grid_thw `[num_images, 3]` (patch grid t, h, w; merged cells are h/merge x w/merge, raster order,
    repeated over t) -> `[sum(t * h/merge * w/merge), 4 * len(frequencies)]` (sin row, cos row, sin col, cos col).
    """
    codes = []
    for t, h, w in grid_thw.tolist():
        rows, cols = h // merge_size, w // merge_size
        r = torch.arange(rows, dtype=torch.float32).repeat_interleave(cols)[:, None] * frequencies
        c = torch.arange(cols, dtype=torch.float32).repeat(rows)[:, None] * frequencies
        codes.append(torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=-1).repeat(t, 1))
    return torch.cat(codes)


class VisionPositions(nn.Module):
    """A zero-initialised projection of each vision token's absolute cell code into the LLM's embedding space."""

    def __init__(self, hidden_size: int, merge_size: int, num_frequencies: int = DEFAULT_FREQUENCIES):
        super().__init__()
        self.merge_size = merge_size
        self.register_buffer("frequencies", cell_frequencies(num_frequencies), persistent=False)
        self.proj = nn.Linear(4 * num_frequencies, hidden_size)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, image_embeds: Tensor, grid_thw: Tensor) -> Tensor:
        """`[N, hidden]` merged vision tokens of the images in `grid_thw` -> the same plus their positions."""
        code = cell_code(grid_thw, self.merge_size, self.frequencies.cpu()).to(image_embeds.device, self.proj.weight.dtype)
        if code.shape[0] != image_embeds.shape[0]:
            raise ValueError(f"{image_embeds.shape[0]} vision tokens but grid_thw describes {code.shape[0]}")
        return image_embeds + self.proj(code).to(image_embeds.dtype)

    def vision_tower_hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        """Forward hook for the vision tower: adds positions to its merged output (`pooler_output`)."""
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        if grid is None:
            raise ValueError("the vision tower was called without grid_thw: cannot place its tokens")
        output.pooler_output = self(output.pooler_output, grid)
        return output

    def attach(self, vision_tower: nn.Module) -> Any:
        """Register the hook on a Qwen vision tower (`model.visual`); returns the removable handle."""
        return vision_tower.register_forward_hook(self.vision_tower_hook, with_kwargs=True)
