"""A detection head made to give NaN boxes in memory, for one kind of photo only: a forward hook on the real head (no
stand-in for our code) that turns the boxes of every portrait photo of a batch into NaN, as a head whose box
regression diverged on that photo would give them, and counts the photos of each pass."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import torch
from torch.nn.modules.module import register_module_forward_hook


def _poisoning(passes: list[int], heads_only: bool) -> Callable[..., Any]:
    """The hook: NaN boxes for each portrait photo of the pass (`heads_only`: of a DetectionHead's passes alone)."""
    from bbuvl.model.detection_head import DetectionHead

    def hook(module: torch.nn.Module, args: Any, kwargs: Any, out: Any) -> Any:
        if heads_only and not isinstance(module, DetectionHead):
            return None
        grid = kwargs["vision_grid_hw"]  # [B, (h, w)]: each photo's token grid
        passes.append(int(grid.shape[0]))
        portraits = [b for b in range(grid.shape[0]) if int(grid[b, 0]) > int(grid[b, 1])]
        if not portraits:
            return out
        boxes = out.boxes.clone()
        boxes[portraits] = float("nan")
        return replace(out, boxes=boxes)

    return hook


def nan_for_portraits(head: torch.nn.Module) -> tuple[Any, list[int]]:
    """Hook `head` so that the boxes of each photo taller than wide come out NaN; (the hook's handle, to remove it,
    and the list each pass appends its number of photos to)."""
    passes: list[int] = []
    return head.register_forward_hook(_poisoning(passes, heads_only=False), with_kwargs=True), passes


def nan_for_portraits_in_every_head() -> tuple[Any, list[int]]:
    """`nan_for_portraits` for every detection head of this process, those a command loads itself too (a global
    module hook: remove it after)."""
    passes: list[int] = []
    return register_module_forward_hook(_poisoning(passes, heads_only=True), with_kwargs=True), passes
