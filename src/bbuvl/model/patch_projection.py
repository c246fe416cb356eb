"""The vision tower's patch embedding as one matrix product instead of a 3-D convolution (docs/design.md,
"The patch embedding is a matrix product").

Qwen's vision towers embed each 2x14x14 patch with a `Conv3d` whose kernel equals its stride and its input: every
output is one dot product of the whole patch with each filter, i.e. `F.linear` on the flattened patch. The
convolution kernels do not know that, and on CPU their backward pass took 42 ms of a 0.8-s training step for
2,048 patches against about 1 ms for the matrix product. The swap changes the module's class only: its
parameters, their names and what `save_pretrained` writes stay the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearPatchProjection(nn.Conv3d):
    """A `Conv3d` whose kernel covers its whole input, computed as a matrix product (any other input: the conv)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x `[N, C, T, P, P]` with `(T, P, P)` the kernel -> `[N, out_channels, 1, 1, 1]`."""
        if tuple(x.shape[2:]) != tuple(self.kernel_size):
            return super().forward(x)
        out = F.linear(x.reshape(x.shape[0], -1), self.weight.reshape(self.out_channels, -1), self.bias)
        return out.view(x.shape[0], self.out_channels, 1, 1, 1)


def is_patch_convolution(module: nn.Module) -> bool:
    """A plain `Conv3d` that cuts its input into disjoint patches: kernel = stride, no padding, dilation or groups."""
    return (type(module) is nn.Conv3d and tuple(module.kernel_size) == tuple(module.stride)
            and all(p == 0 for p in module.padding) and all(d == 1 for d in module.dilation)
            and module.groups == 1 and module.padding_mode == "zeros")


def use_linear_patch_projection(model: nn.Module) -> int:
    """Turn every patch convolution in `model` into a `LinearPatchProjection` in place; returns how many."""
    swapped = 0
    for module in model.modules():
        if is_patch_convolution(module):
            module.__class__ = LinearPatchProjection
            swapped += 1
    return swapped
