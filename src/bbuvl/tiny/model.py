"""A tiny, randomly initialised Qwen2.5-VL saved like a real checkpoint, to test every real code path offline.

Same architecture as Qwen2.5-VL-3B (windowed vision tower with 2x2 patch merger, mRoPE text model, tied
embeddings), only smaller; saved with `save_pretrained` (safetensors + processor files) so loading it takes the
exact path a downloaded checkpoint takes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.utils import is_torchvision_available
from transformers.utils import logging as hf_logging

from bbuvl.data.coords import CoordinateContract
from bbuvl.encode.chat import IMAGE_TOKEN
from bbuvl.model.processor import Qwen2_5_VLImageOnlyProcessor
from bbuvl.tiny.tokenizer import EOS_TOKEN, PAD_TOKEN, QWEN2_5_VL_CHAT_TEMPLATE, train_tokenizer

# Qwen2.5-VL's vision geometry: 14-px patches, 2 frames per temporal patch, 2x2 merge into one LLM token.
PATCH_SIZE = 14
TEMPORAL_PATCH_SIZE = 2
MERGE_SIZE = 2


def mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) as Qwen2.5-VL does (3B: 128 -> [16, 24, 24])."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for rotary embeddings, got {head_dim}")
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def tiny_config(
    tokenizer: Any,
    *,
    hidden: int,
    layers: int,
    heads: int,
    kv_heads: int,
    vision_depth: int,
    vision_hidden: int,
    vision_heads: int,
) -> Qwen2_5_VLConfig:
    """A Qwen2.5-VL config at toy size whose vocabulary and special-token ids are the tokenizer's.

    Sizes have no defaults here: `build_tiny_model` holds the one set of defaults.
    """
    if hidden % heads or heads % kv_heads:
        raise ValueError(f"hidden ({hidden}) must divide by heads ({heads}), and heads by kv_heads ({kv_heads})")
    if vision_hidden % vision_heads:
        raise ValueError(f"vision_hidden ({vision_hidden}) must divide by vision_heads ({vision_heads})")
    ids = tokenizer.convert_tokens_to_ids
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        # `rope_parameters` is the field in transformers 5.17 and 5.23 alike (`rope_scaling` is only read as
        # a legacy alias); mrope_section must sum to head_dim/2.
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": mrope_section(hidden // heads),
        },
        "bos_token_id": ids(PAD_TOKEN),
        "eos_token_id": ids(EOS_TOKEN),
        "pad_token_id": ids(PAD_TOKEN),
        "tie_word_embeddings": True,
    }
    vision_config = {
        "depth": vision_depth,
        "hidden_size": vision_hidden,
        "intermediate_size": 2 * vision_hidden,
        "num_heads": vision_heads,
        "out_hidden_size": hidden,
        "patch_size": PATCH_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "spatial_merge_size": MERGE_SIZE,
        "window_size": 112,
        "tokens_per_second": 2,
        # The last block attends over the full image, the others within windows, as in the 3B.
        "fullatt_block_indexes": [vision_depth - 1],
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids(IMAGE_TOKEN),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
    )


def build_tiny_model(
    out: Path,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    vision_depth: int = 2,
    vision_hidden: int = 64,
    vision_heads: int = 4,
    min_pixels: int = 12544,
    max_pixels: int = 50176,
    seed: int = 0,
) -> Path:
    """Build, seed and save a tiny Qwen2.5-VL (model + processor) to `out`; the same seed gives the same bytes."""
    CoordinateContract(min_pixels, max_pixels)  # checks the bounds before any work
    out = Path(out)
    tokenizer = train_tokenizer(seed=seed)
    config = tiny_config(
        tokenizer,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        vision_depth=vision_depth,
        vision_hidden=vision_hidden,
        vision_heads=vision_heads,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    ids = tokenizer.convert_tokens_to_ids
    model.generation_config.eos_token_id = [ids(EOS_TOKEN), ids(PAD_TOKEN)]
    model.generation_config.pad_token_id = ids(PAD_TOKEN)
    model.generation_config.bos_token_id = ids(PAD_TOKEN)
    model.generation_config.do_sample = False
    image_processor = _image_processor_class()(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        patch_size=PATCH_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        merge_size=MERGE_SIZE,
    )
    processor = Qwen2_5_VLImageOnlyProcessor(image_processor, tokenizer, chat_template=QWEN2_5_VL_CHAT_TEMPLATE)
    out.mkdir(parents=True, exist_ok=True)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a shard bar for a 4 MB file is noise in test and CLI output
    try:
        model.save_pretrained(out, safe_serialization=True)
        processor.save_pretrained(out)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    return out


def _image_processor_class() -> type:
    """The torchvision image processor where torchvision imports, else the PIL one (both save the same type name)."""
    if is_torchvision_available():
        from transformers import Qwen2VLImageProcessor

        return Qwen2VLImageProcessor
    # Asking for Qwen2VLImageProcessor here would fall back to this class too, after a warning.
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil


def count_saved_parameters(folder: Path) -> int:
    """Parameters stored in a checkpoint folder's safetensors files (tied embeddings are stored, and counted, once)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder}: no .safetensors files")
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return total
