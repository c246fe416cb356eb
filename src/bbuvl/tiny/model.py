"""Tiny, randomly initialised Qwen VL models saved like real checkpoints, to test every real code path offline.

One per family (`qwen2_5_vl`, `qwen3_vl`, `qwen3_5`; docs/families.md): the family's real architecture and
preprocessing (tiny/configs.py), only smaller, with the offline tokenizer and the family's chat template;
saved with `save_pretrained` (safetensors + processor files) so loading it takes the exact path a downloaded
checkpoint takes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration
from transformers.utils import is_torchvision_available
from transformers.utils import logging as hf_logging

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.families import DEFAULT_FAMILY, get_family
from bbuvl.model.processor import image_only_processor_class, save_processor
from bbuvl.tiny.configs import TEMPORAL_PATCH_SIZE, TinySizes, tiny_config
from bbuvl.tiny.templates import chat_template
from bbuvl.tiny.tokenizer import EOS_TOKEN, PAD_TOKEN, train_tokenizer

# The image processors' normalisation: Qwen2.5-VL kept CLIP's statistics, Qwen3-VL and Qwen3.5 use 0.5.
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]
IMAGE_STATS = {"qwen2_5_vl": (CLIP_MEAN, CLIP_STD), "qwen3_vl": (HALF, HALF), "qwen3_5": (HALF, HALF)}


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
    family: str = DEFAULT_FAMILY,
) -> Path:
    """Build, seed and save a tiny model of `family` (model + processor) to `out`; the same seed gives the same bytes."""
    fam = get_family(family)
    CoordinateContract(min_pixels, max_pixels, family=family)  # checks the bounds before any work
    sizes = TinySizes(hidden, layers, heads, kv_heads, vision_depth, vision_hidden, vision_heads)
    out = Path(out)
    tokenizer = train_tokenizer(seed=seed, family=family)
    config = tiny_config(family, tokenizer, sizes, max_pixels)
    # Any int is a seed; torch takes 64 bits (2**64 was "Overflow when unpacking long long"), the same bits as before.
    torch.manual_seed(seed % 2**64)
    model = _model_class(family)(config).eval()
    ids = tokenizer.convert_tokens_to_ids
    model.generation_config.eos_token_id = [ids(EOS_TOKEN), ids(PAD_TOKEN)]
    model.generation_config.pad_token_id = ids(PAD_TOKEN)
    model.generation_config.bos_token_id = ids(PAD_TOKEN)
    model.generation_config.do_sample = False
    mean, std = IMAGE_STATS[family]
    # The bounds once, as transformers 5 stores them (`size`); passing min_pixels/max_pixels too made some releases
    # save them twice, beside the coordinate contract's own copy (data/coords.py).
    image_processor = _image_processor_class()(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=fam.patch_size,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        merge_size=fam.merge_size,
        image_mean=mean,
        image_std=std,
    )
    processor = image_only_processor_class(family)(image_processor, tokenizer, chat_template=chat_template(family))
    out.mkdir(parents=True, exist_ok=True)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a shard bar for a 4 MB file is noise in test and CLI output
    try:
        model.save_pretrained(out, safe_serialization=True)
        save_processor(processor, out)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    return out


def _model_class(family: str) -> type:
    """The family's `...ForConditionalGeneration` (what AutoModelForImageTextToText loads it back as)."""
    if family == "qwen3_5":
        # Imported here: transformers releases before Qwen3.5 still build the other two families.
        from transformers import Qwen3_5ForConditionalGeneration

        return Qwen3_5ForConditionalGeneration
    return {"qwen2_5_vl": Qwen2_5_VLForConditionalGeneration, "qwen3_vl": Qwen3VLForConditionalGeneration}[family]


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
