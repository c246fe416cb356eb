"""Random-weight backbones saved like real checkpoints (config + image processor + weights), for offline tests.

`tiny_backbone("clip", out)` writes a folder that `load_backbone(out)` reads through the same
`from_pretrained` path as `openai/clip-vit-base-patch32`. With `full=True` the architecture and
preprocessing are the stock ones (ViT-B/32 at 224, DINOv2-base, ResNet-50) with random weights: the real
compute per crop, for benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bbuvl.fewshot.backbones import MODEL_TYPES, model_class

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
LEARNED_KINDS = tuple(sorted(set(MODEL_TYPES.values())))


def _image_processor_class(name: str) -> Any:
    """The PIL implementation where transformers has one (it needs no torchvision), else the plain class."""
    import transformers

    return getattr(transformers, name + "Pil", None) or getattr(transformers, name)


def _config_and_processor(kind: str, image_size: int, full: bool) -> tuple[Any, Any]:
    import transformers

    if kind == "clip":
        config = transformers.CLIPVisionConfig() if full else transformers.CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=image_size, patch_size=max(2, image_size // 4), projection_dim=16,
        )
        side = config.image_size
        processor = _image_processor_class("CLIPImageProcessor")(
            size={"shortest_edge": side}, crop_size={"height": side, "width": side},
            image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True,
        )
    elif kind == "dinov2":
        config = transformers.Dinov2Config() if full else transformers.Dinov2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
            image_size=image_size, patch_size=max(2, image_size // 4),
        )
        side = config.image_size
        processor = _image_processor_class("BitImageProcessor")(  # what facebook/dinov2-* ship: resize 256, crop 224
            size={"shortest_edge": round(side * 256 / 224)}, crop_size={"height": side, "width": side},
            image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD, do_convert_rgb=True,
        )
    elif kind == "resnet":
        config = transformers.ResNetConfig() if full else transformers.ResNetConfig(
            embedding_size=16, hidden_sizes=[32, 64], depths=[1, 1], layer_type="bottleneck",
        )
        side = 224 if full else image_size
        processor = _image_processor_class("ConvNextImageProcessor")(  # what microsoft/resnet-50 ships
            size={"shortest_edge": side}, crop_pct=224 / 256, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD,
        )
    else:
        raise ValueError(f"unknown backbone kind '{kind}' (choose from {', '.join(LEARNED_KINDS)})")
    return config, processor


def tiny_backbone(kind: str, out: str | Path, image_size: int = 32, seed: int = 0, full: bool = False) -> Path:
    """Write a random-weight `kind` backbone (clip, dinov2, resnet) to `out` with its config and processor."""
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8, got {image_size}")
    config, processor = _config_and_processor(kind, image_size, full)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Any int is a seed; torch takes 64 bits (2**64 was "Overflow when unpacking long long"), the same bits as before.
    torch.manual_seed(seed % 2**64)
    model = model_class(kind)(config)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
