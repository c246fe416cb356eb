"""Where the head looks: decoder cross-attention of its most confident queries over the image (`bbuvl doctor attention`).

The decoder's memory is [vision tokens of the image in raster order of the merged patch grid, text
tokens]. A query that found an object should attend to the image tokens around it; one that spends
its attention on the text, or spreads it evenly, has not learned to look (DETR, Fig. 6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bbuvl.data.text import spell_controls
from bbuvl.diagnostics.probe import detection_outputs, image_batch
from bbuvl.infer.predictor import Predictor
from bbuvl.model.box_ops import to_xyxy


def caption_text(tokenizer: Any, ids: list[int], stops: tuple[int, ...]) -> str:
    """A caption's text as the table and the plot show it: a half-trained head writes any token, an ESC or a carriage
    return among them, which the terminal would obey and the plot's font cannot draw, so control characters are
    spelled out (`\\x1b`)."""
    return spell_controls(tokenizer.decode([t for t in ids if t not in stops]).strip())


@dataclass
class QueryAttention:
    """One query's prediction and where it looked."""

    query: int
    score: float  # objectness probability
    caption: str
    box: list[float]  # xyxy, normalised to the image
    heat: torch.Tensor  # [h, w] attention over the merged patch grid (heads averaged), sums to vision_share
    vision_share: float  # attention mass on image tokens (the rest went to text tokens)


@dataclass
class AttentionMaps:
    """Cross-attention of the top queries of one image, at one decoder layer."""

    image: Image.Image  # the model-frame picture the model saw
    grid: tuple[int, int]  # (h, w) merged patch grid
    layer: int
    queries: list[QueryAttention] = field(default_factory=list)


def cross_attention(predictor: Predictor, image: str | Path | Image.Image, top_k: int = 4, layer: int = -1) -> AttentionMaps:
    """Attention of the `top_k` most confident queries over `image` at decoder `layer` (default: the last)."""
    model = predictor.model
    head = model.detection_head
    if head is None:
        raise ValueError(f"{model.no_head()}: no queries to show")
    layers = head.decoder.layers
    if not -len(layers) <= layer < len(layers):
        raise ValueError(f"--layer {layer}: the head's decoder has {len(layers)} layers")
    attn = layers[layer].multihead_attn
    captured: dict[str, torch.Tensor] = {}

    def want_weights(module: Any, args: Any, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        # TransformerDecoderLayer asks for no weights; ask for them per head (same output, slower path).
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def keep(module: Any, args: Any, output: Any) -> None:
        captured["weights"] = output[1].detach().float().cpu()  # [B, heads, Q, memory]

    hooks = [attn.register_forward_pre_hook(want_weights, with_kwargs=True), attn.register_forward_hook(keep)]
    batch, pictures = image_batch(predictor, [image])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            det = detection_outputs(model, batch)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    h, w = (int(v) for v in batch.det_grid_hw[0])
    weights = captured["weights"][0].mean(dim=0)  # [Q, memory], heads averaged
    scores = det.objectness_logits[0].float().sigmoid().cpu()
    boxes = to_xyxy(det.boxes[0].float(), head.box_format).clamp(0, 1).cpu()
    top = scores.topk(min(top_k, scores.numel())).indices
    ids, _ = head.generate_captions(det.query_hidden[0, top])
    maps = AttentionMaps(pictures[0], (h, w), layer % len(layers))
    for j, q in enumerate(top.tolist()):
        vision = weights[q, : h * w]
        stops = (head.eos_token_id, head.pad_token_id)
        maps.queries.append(QueryAttention(q, float(scores[q]), caption_text(predictor.tokenizer, ids[j].tolist(), stops),
                                           boxes[q].tolist(), vision.reshape(h, w), float(vision.sum())))
    return maps
