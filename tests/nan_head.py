"""A detection head made to give NaN boxes in memory, for one kind of photo only: a forward hook on the loaded model's
real head (no stand-in for our code) that turns the boxes of every portrait photo of a batch into NaN, as a head whose
box regression diverged on that photo would give them, and counts the photos of each pass."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch


def nan_for_portraits(head: torch.nn.Module) -> tuple[Any, list[int]]:
    """Hook `head` so that the boxes of each photo taller than wide come out NaN; (the hook's handle, to remove it,
    and the list each pass appends its number of photos to)."""
    passes: list[int] = []

    def hook(module: torch.nn.Module, args: Any, kwargs: Any, out: Any) -> Any:
        grid = kwargs["vision_grid_hw"]  # [B, (h, w)]: each photo's token grid
        passes.append(int(grid.shape[0]))
        portraits = [b for b in range(grid.shape[0]) if int(grid[b, 0]) > int(grid[b, 1])]
        if not portraits:
            return out
        boxes = out.boxes.clone()
        boxes[portraits] = float("nan")
        return replace(out, boxes=boxes)

    return head.register_forward_hook(hook, with_kwargs=True), passes
