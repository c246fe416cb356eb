"""The loss around a checkpoint along two random directions (`bbuvl doctor landscape`; Li et al. 2018).

Directions are filter-normalised: each row of each weight matrix gets a random direction scaled to
that row's norm, so a step of 1 moves every filter by its own size whatever the layer's scale; 1-D
parameters (biases, norms) stay put, as in the paper. A sharp, narrow basin around (0, 0) means the
run sits on a ledge a small change (another LR, another batch) falls off; a flat one is robust.
The parameters are restored bit for bit afterwards, also when the sweep is interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from bbuvl.diagnostics.probe import batch_loss
from bbuvl.train.param_groups import group_of, parse_groups

HEAD_GROUPS = ("detection", "adapter")


@dataclass
class Landscape:
    """Losses on a grid: `losses[i][j]` at `alphas[i]` along direction 1 and `betas[j]` along direction 2."""

    alphas: list[float]
    betas: list[float]
    losses: list[list[float]]
    groups: list[str]
    parameters: int  # how many scalars the directions move
    center: float  # the loss at the checkpoint itself


def filter_normalised_direction(params: Sequence[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """A random direction per parameter, each row scaled to the norm of the same row of the weight; zero for 1-D ones."""
    out = []
    for p in params:
        if p.ndim < 2:
            out.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=generator, dtype=torch.float32)
        w = p.detach().float().cpu()
        rows_w = w.reshape(w.shape[0], -1).norm(dim=1)
        rows_d = d.reshape(d.shape[0], -1).norm(dim=1).clamp_min(1e-12)
        d = d * (rows_w / rows_d).reshape(-1, *([1] * (d.ndim - 1)))
        out.append(d.to(device=p.device, dtype=p.dtype))
    return out


# The grid costs steps² loss evaluations and as many numbers held at once: 101² is hours on a real model already,
# and 100,000 steps hung allocating 10^10 of them before the first evaluation.
MAX_STEPS = 101


def loss_landscape(
    model: Any,
    batches: list[dict[str, Any]],
    groups: Sequence[str] = HEAD_GROUPS,
    steps: int = 11,
    span: float = 1.0,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> Landscape:
    """Mean loss over `batches` on a `steps` x `steps` grid in [-span, span]^2 of two directions in `groups`' parameters."""
    groups = parse_groups(",".join(groups))
    if not 2 <= steps <= MAX_STEPS:
        raise ValueError(f"--steps must be in [2, {MAX_STEPS}], got {steps}")
    named = [(n, p) for n, p in model.named_parameters() if group_of(n) in groups]
    if not named:
        raise ValueError(f"the model has no parameters in group(s) {', '.join(groups)}")
    params = [p for _, p in named]
    # Any int is a seed; torch takes 64 bits (2**64 was "Overflow when unpacking long long"), the same bits as before.
    gen = torch.Generator().manual_seed(seed % 2**64)
    d1, d2 = filter_normalised_direction(params, gen), filter_normalised_direction(params, gen)
    original = [p.detach().clone() for p in params]
    grid = torch.linspace(-span, span, steps).tolist()
    losses = [[float("nan")] * steps for _ in range(steps)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            center = batch_loss(model, batches)
            done = 0
            for i, a in enumerate(grid):
                for j, b in enumerate(grid):
                    for p, w, u, v in zip(params, original, d1, d2):
                        p.copy_(w + a * u + b * v)
                    losses[i][j] = batch_loss(model, batches)
                    done += 1
                    if on_progress:
                        on_progress(done, steps * steps)
    finally:
        with torch.no_grad():
            for p, w in zip(params, original):
                p.copy_(w)
        model.train(was_training)
    return Landscape(grid, grid, losses, list(groups), sum(p.numel() for p in params), center)
