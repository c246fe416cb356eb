"""Activation statistics and dead units per layer of the detection head and its adapters (`bbuvl doctor features`).

A unit is dead when it never fires on the probe photos: its mean |activation| after the layer's
nonlinearity is below `DEAD_EPS`. Probed are the layers with a nonlinearity of
their own (adapter bottlenecks: GELU; decoder feed-forward layers: their activation; the box MLP's
hidden layers: ReLU), plus the outputs of the adapters and decoders, whose scale says whether the two
memory modalities (input embeddings, last hidden states) arrive on comparable scales.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn


DEAD_EPS = 1e-6


@dataclass
class LayerStats:
    """Statistics of one probed layer over every token (or query) of the probe photos, never a padded position."""

    name: str
    units: int
    mean: float
    std: float
    min: float
    max: float
    dead: int  # units whose mean |activation| < DEAD_EPS
    samples: torch.Tensor  # up to 4096 activation values, for the histogram
    nonfinite: int = 0  # activation values that are NaN or inf: the statistics above mean nothing then

    @property
    def dead_fraction(self) -> float:
        """Dead units / units."""
        return self.dead / self.units if self.units else 0.0


# Which memory a probed layer reads, by the prefix of its name: its padded positions are no token of any photo
_MEMORY = {"vision_adapter": "vision_mask", "language_adapter": "text_mask"}


def probed_layers(head: nn.Module) -> list[tuple[str, nn.Module, Callable[[torch.Tensor], torch.Tensor] | None]]:
    """`(name, module, activation applied to its output)` for every layer `doctor features` reads."""
    layers: list[tuple[str, nn.Module, Callable[[torch.Tensor], torch.Tensor] | None]] = []
    for name in ("vision_adapter", "language_adapter"):
        adapter = getattr(head, name)
        layers.append((f"{name}.bottleneck (gelu)", adapter.down, F.gelu))
        layers.append((f"{name} (output)", adapter, None))
    for dec_name in ("decoder", "caption_decoder"):
        decoder = getattr(head, dec_name)
        for i, layer in enumerate(decoder.layers):
            layers.append((f"{dec_name}.{i}.ffn ({layer.activation.__name__})", layer.linear1, layer.activation))
        layers.append((f"{dec_name} (output)", decoder, None))
    for i, linear in enumerate(head.box_head.layers[:-1]):
        layers.append((f"box_head.{i} (relu)", linear, F.relu))
    layers.append(("objectness_head (logits)", head.objectness_head, None))
    return layers


def feature_stats(model: Any, batches: list[dict[str, Any]], max_samples: int = 4096) -> list[LayerStats]:
    """Run the model on `batches` (no gradients, eval mode) and summarise every probed layer of its head."""
    head = model.detection_head
    if head is None:
        raise ValueError(f"{model.no_head()}: nothing to probe")
    collected: dict[str, list[torch.Tensor]] = {}
    masks: dict[str, torch.Tensor] = {}

    def take_masks(m: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        # In a batch of photos of several sizes, the shorter ones' vision and text positions are padding: counted,
        # they moved the adapters' statistics with the batch size, and a padded row firing hid a dead unit.
        given = dict(zip(("vision_embeds", "vision_mask", "text_hidden", "text_mask"), args)) | kwargs
        masks.update({k: given[k].detach().bool() for k in _MEMORY.values() if k in given})

    def hook(m: nn.Module, args: Any, out: Any, name: str, activation: Any) -> None:
        x = out.detach().float()
        x = activation(x) if activation is not None else x
        mask = masks.get(_MEMORY.get(name.split(" ")[0].split(".")[0], ""))
        rows = x[mask] if mask is not None and mask.shape == x.shape[:-1] else x.reshape(-1, x.shape[-1])
        collected.setdefault(name, []).append(rows.cpu())

    hooks = [head.register_forward_pre_hook(take_masks, with_kwargs=True)]
    for name, module, activation in probed_layers(head):
        hooks.append(module.register_forward_hook(lambda m, a, o, name=name, activation=activation: hook(m, a, o, name, activation)))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in batches:
                model(b.to(device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    stats = []
    gen = torch.Generator().manual_seed(0)
    for name, _, _ in probed_layers(head):
        x = torch.cat(collected[name]) if name in collected else None  # [N, units]
        if x is None or x.shape[0] == 0:  # the caption decoder reads only queries matched to an object: none here
            continue
        flat = x.flatten()
        keep = flat[torch.randperm(flat.numel(), generator=gen)[:max_samples]]
        stats.append(LayerStats(name, x.shape[1], float(x.mean()), float(x.std()), float(x.min()), float(x.max()),
                                int((x.abs().mean(dim=0) < DEAD_EPS).sum()), keep, int((~torch.isfinite(x)).sum())))
    return stats
