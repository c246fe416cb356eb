"""The vision tower's pre-merge patch features, as a fine map under the detection head's token grid (docs/tiles.md).

Every family's tower merges 2x2 patches (14 px for Qwen2.5-VL, 16 px for Qwen3-VL and Qwen3.5) into one LLM
token. The head reads the merged tokens; a part of 10-24 px is at most one of them. This module records what the
tower held before its merger (`last_hidden_state` of the tower's output) and lays it out as a `[S, Cv, 2H, 2W]`
map per student image, aligned with the head's coarse `[S, D, H, W]` grid (`detection_head.vision_grid`): fine
cell `(2r + dr, 2c + dc)` is patch `(dr, dc)` of coarse token `(r, c)`.

Two orders have to be undone:

- **merge units**: the processor writes each image's patches as rows of `[h/2, w/2, 2, 2]` blocks, one merge
  unit (the four patches of one token, row-major) contiguous, units in raster order;
- **windows** (Qwen2.5-VL only): its tower permutes the merge units into attention windows before its blocks and
  un-permutes only the merged output (`reverse_indices`), so the pre-merge sequence is in window order. The same
  `get_vision_window_index` the tower calls gives the permutation back.

A forward hook on the tower records the features, so training, the head's pass and prediction all see them
without re-implementing the VLM's forward (as `vision_positions.py` adds positions).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from transformers.vision_utils import get_vision_window_index


@dataclass
class PatchFeatures:
    """One tower call's pre-merge features: every image's patches in merge-unit order (windows undone)."""

    features: Tensor  # [P, Cv], images one after another, each as rows of [h/2, w/2, 2, 2] patch blocks
    grid_thw: Tensor  # [num_images, 3], patch grids (t, h, w) in the same order
    # [P, C * T * p * p]: the tower's input, the processor's normalised pixels of each patch in the same order
    # (recorded only for a head with a pixel level, `PatchCapture(pixels=True)`)
    pixels: Tensor | None = None


def is_windowed(tower: nn.Module) -> bool:
    """True for a tower that runs its blocks on merge units permuted into attention windows (Qwen2.5-VL)."""
    return hasattr(tower, "window_size") and hasattr(tower, "fullatt_block_indexes")


def unwindow(hidden: Tensor, grid_thw: Tensor, tower: nn.Module) -> Tensor:
    """`[P, Cv]` pre-merge features in the tower's window order -> merge-unit raster order (identity for unwindowed towers)."""
    if not is_windowed(tower):
        return hidden
    merge = int(tower.spatial_merge_size)
    window_index, _ = get_vision_window_index(grid_thw, spatial_merge_size=merge, window_size=tower.window_size,
                                              patch_size=tower.patch_size)
    unit = merge * merge
    units = hidden.reshape(hidden.shape[0] // unit, unit, hidden.shape[1])
    return units[torch.argsort(window_index.to(hidden.device))].reshape(hidden.shape)


def unit_order_to_map(features: Tensor, h: int, w: int, merge: int = 2) -> Tensor:
    """One image's `[h * w, Cv]` patches in merge-unit order (patch grid h x w) -> a `[Cv, h, w]` map in image layout."""
    if features.shape[0] != h * w:
        raise ValueError(f"{features.shape[0]} patches but the grid is {h}x{w}")
    blocks = features.reshape(h // merge, w // merge, merge, merge, features.shape[1])  # [R, C, dr, dc, Cv]
    return blocks.permute(4, 0, 2, 1, 3).reshape(features.shape[1], h, w)


def map_to_unit_order(maps: Tensor, merge: int = 2) -> Tensor:
    """Inverse of `unit_order_to_map`: `[Cv, h, w]` -> `[h * w, Cv]` in merge-unit order (what a tower's merger reads)."""
    cv, h, w = maps.shape
    return maps.reshape(cv, h // merge, merge, w // merge, merge).permute(1, 3, 2, 4, 0).reshape(h * w, cv)


def _image_starts(grid: list[list[int]]) -> list[int]:
    """Each image's first patch row in a tower call's rows (images one after another, t * h * w rows each)."""
    starts = [0]
    for t, h, w in grid:
        starts.append(starts[-1] + t * h * w)
    return starts


def patch_maps(patches: PatchFeatures, image_index: Tensor, merge: int = 2) -> tuple[Tensor, Tensor]:
    """The student images' fine maps: `[S, Cv, 2 * Hmax, 2 * Wmax]` (each top-left, zeros elsewhere) and their `[S, 2]` grids.

    image_index `[S]`: each sample's student image in `patches.grid_thw`. Fine grid = merge x the head's token
    grid (`Batch.det_grid_hw`), so `roi_sample` with normalised boxes reads the same place on both maps.
    """
    grid = patches.grid_thw.tolist()
    starts = _image_starts(grid)
    chosen = [grid[i] for i in image_index.tolist()]
    if any(t != 1 for t, _, _ in chosen):
        raise ValueError(f"student images must be single frames (t = 1), got grids {chosen}")
    hmax, wmax = max(h for _, h, _ in chosen), max(w for _, _, w in chosen)
    out = patches.features.new_zeros(len(chosen), patches.features.shape[1], hmax, wmax)
    for s, i in enumerate(image_index.tolist()):
        _, h, w = grid[i]
        out[s, :, :h, :w] = unit_order_to_map(patches.features[starts[i]:starts[i + 1]], h, w, merge)
    hw = torch.tensor([[h, w] for _, h, w in chosen], device=image_index.device)
    return out, hw


def pixel_maps(patches: PatchFeatures, image_index: Tensor, patch_size: int, channels: int = 3, merge: int = 2) -> Tensor:
    """The student images as the tower saw them: `[S, C, 2 * Hmax * p, 2 * Wmax * p]` normalised pixels, top-left.

    Each patch row holds `[C, T, p, p]` (the processor's layout in every family); a photo's T frames are copies of
    it, so they are averaged. Pixel `(y, x)` lies under fine cell `(y // p, x // p)` of `patch_maps`' map.
    """
    if patches.pixels is None:
        raise ValueError("no pixels recorded: the capture was built without pixels=True")
    grid = patches.grid_thw.tolist()
    starts = _image_starts(grid)
    chosen = [grid[i] for i in image_index.tolist()]
    hmax, wmax = max(h for _, h, _ in chosen), max(w for _, _, w in chosen)
    width = patches.pixels.shape[1]
    frames = width // (channels * patch_size * patch_size)
    if frames < 1 or width != channels * frames * patch_size * patch_size:
        raise ValueError(f"patch rows of {width} values do not hold {channels} x T x {patch_size} x {patch_size} pixels")
    out = patches.pixels.new_zeros(len(chosen), channels, hmax * patch_size, wmax * patch_size)
    for s, i in enumerate(image_index.tolist()):
        _, h, w = grid[i]
        cells = unit_order_to_map(patches.pixels[starts[i]:starts[i + 1]], h, w, merge)  # [C*T*p*p, h, w]
        cells = cells.reshape(channels, frames, patch_size, patch_size, h, w).mean(1)  # [C, p, p, h, w]
        out[s, :, :h * patch_size, :w * patch_size] = cells.permute(0, 3, 1, 4, 2).reshape(channels, h * patch_size,
                                                                                          w * patch_size)
    return out


class PatchCapture:
    """A forward hook on a vision tower that records its pre-merge features (and, with `pixels`, its input pixels)
    while `recording()` is active, for each thread on its own: threads passing through one model at once (a
    `Predictor` shared by threads, `nn.DataParallel`'s replicas) each take their own tower call's features."""

    def __init__(self, pixels: bool = False) -> None:
        self.pixels = pixels
        # One switch and one record per thread: shared, a second thread's `recording()` cleared the first's record
        # and its end switched the first's recording off, so the head read the other photo's features or none.
        self._state = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        """What a copy keeps (GRPO's frozen reference deep-copies the model, rl/trainer.py): no thread's record."""
        return {"pixels": self.pixels}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A copy records for its own threads, from none."""
        self.pixels, self._state = state["pixels"], threading.local()

    @contextmanager
    def recording(self) -> Iterator["PatchCapture"]:
        """Record this thread's tower calls inside the block; the record is dropped on leaving (no graph outlives a
        step)."""
        state = self._state
        state.on, state.last = True, None
        try:
            yield self
        finally:
            state.on, state.last = False, None

    def take(self) -> PatchFeatures:
        """This thread's latest recorded call's features; RuntimeError when the tower did not run while recording."""
        last = getattr(self._state, "last", None)
        if last is None:
            raise RuntimeError("no pre-merge patch features recorded: the vision tower did not run inside recording()")
        return last

    def hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        """Forward hook: keep the tower's `last_hidden_state` (pre-merge) in merge-unit order, for this thread."""
        if not getattr(self._state, "on", False):
            return
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        if grid is None:
            raise ValueError("the vision tower was called without grid_thw: cannot place its patches")
        # The input is in the processor's merge-unit order: the tower windows it only after its patch embedding.
        pixels = kwargs.get("hidden_states", args[0] if args else None) if self.pixels else None
        self._state.last = PatchFeatures(unwindow(output.last_hidden_state, grid, module), grid, pixels)

    def attach(self, vision_tower: nn.Module) -> Any:
        """Register the hook on a Qwen vision tower (`model.visual`); returns the removable handle."""
        return vision_tower.register_forward_hook(self.hook, with_kwargs=True)
