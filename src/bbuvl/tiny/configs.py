"""Toy-size configs of the three families' real architectures, with the tokenizer's vocabulary and token ids.

One function per family, each the family's real layout at the sizes of `TinySizes` (docs/families.md):
Qwen2.5-VL (windowed vision tower, 14-px patches, mRoPE in three contiguous sections), Qwen3-VL (16-px patches,
learned vision position embeddings, DeepStack features from the first vision blocks, interleaved mRoPE) and
Qwen3.5 (Qwen3-VL's vision tower without DeepStack; a hybrid text model of Gated DeltaNet linear-attention
layers and full-attention layers with partial rotary embeddings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from transformers import PretrainedConfig, Qwen2_5_VLConfig, Qwen3VLConfig

from bbuvl.data.families import IMAGE_TOKEN, VIDEO_TOKEN, VISION_END_TOKEN, VISION_START_TOKEN, get_family
from bbuvl.tiny.tokenizer import EOS_TOKEN, PAD_TOKEN

TEMPORAL_PATCH_SIZE = 2  # every family: two frames per temporal patch (a photo is repeated)
# Qwen3.5 interleaves 3 linear-attention layers with 1 full-attention layer (Qwen3.5 config's default).
FULL_ATTENTION_INTERVAL = 4
PARTIAL_ROTARY_FACTOR = 0.25  # Qwen3.5: a quarter of each head's dims rotate


@dataclass(frozen=True)
class TinySizes:
    """The sizes a tiny model is built at; `build_tiny_model` holds the one set of defaults."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    vision_depth: int
    vision_hidden: int
    vision_heads: int

    def __post_init__(self) -> None:
        problem = shape_problem(self.hidden, self.heads, self.kv_heads, self.vision_hidden, self.vision_heads)
        if problem:
            raise ValueError(problem)

    @property
    def head_dim(self) -> int:
        """Text attention head size."""
        return self.hidden // self.heads


def shape_problem(hidden: int, heads: int, kv_heads: int, vision_hidden: int, vision_heads: int,
                  name: Callable[[str], str] = str) -> str | None:
    """Why no model can take these sizes, each named by `name` (the builder's argument, or a CLI's option), or None."""
    problems = []
    if hidden % heads or heads % kv_heads:
        problems.append(f"{name('hidden')} {hidden} must divide by {name('heads')} {heads}, "
                        f"and {name('heads')} by {name('kv_heads')} {kv_heads}")
    if vision_hidden % vision_heads:
        problems.append(f"{name('vision_hidden')} {vision_hidden} must divide by {name('vision_heads')} {vision_heads}")
    elif (vision_hidden // vision_heads) % 4:
        # The vision tower's rotary code gives each head a quarter of its size per image axis: a head of 1, 2, 3 or 6
        # was saved, then failed on every photo with a shape error
        problems.append(f"a vision head ({name('vision_hidden')} {vision_hidden} / {name('vision_heads')} "
                        f"{vision_heads} = {vision_hidden // vision_heads}) must be a multiple of 4 (its rotary "
                        "code is split over height and width)")
    return "; ".join(problems) or None


def mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) as Qwen2.5-VL does (3B: 128 -> [16, 24, 24])."""
    if head_dim % 2:
        raise ValueError(f"head_dim must be even for rotary embeddings, got {head_dim}")
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def interleaved_mrope_section(rotary_dim: int) -> list[int]:
    """Frequencies per axis when (time, height, width) take turns over rotary_dim/2 (Qwen3.5: 64 -> [11, 11, 10]).

    Interleaved mRoPE gives frequency i to axis i % 3 up to 3 * section[axis]; these sections interleave all of
    them, which is what Qwen3.5 ships (Qwen3-VL's [24, 20, 20] leaves the last 4 to time).
    """
    if rotary_dim % 2 or rotary_dim < 6:
        raise ValueError(f"rotary dims must be even and at least 6 (one frequency per axis), got {rotary_dim}")
    half = rotary_dim // 2
    return [math.ceil((half - axis) / 3) for axis in range(3)]


def tiny_config(family: str, tokenizer: Any, sizes: TinySizes, max_pixels: int) -> PretrainedConfig:
    """The family's config at toy size whose vocabulary and special-token ids are the tokenizer's."""
    builders = {"qwen2_5_vl": _qwen2_5_vl, "qwen3_vl": _qwen3_vl, "qwen3_5": _qwen3_5}
    get_family(family)  # names the supported families when `family` is none of them
    return builders[family](tokenizer, sizes, max_pixels)


def _token_ids(tokenizer: Any) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": ids(IMAGE_TOKEN),
        "video_token_id": ids(VIDEO_TOKEN),
        "vision_start_token_id": ids(VISION_START_TOKEN),
        "vision_end_token_id": ids(VISION_END_TOKEN),
    }


def _text(tokenizer: Any, sizes: TinySizes, rope_parameters: dict[str, Any]) -> dict[str, Any]:
    """Text-model fields all three families share."""
    ids = tokenizer.convert_tokens_to_ids
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": sizes.hidden,
        "intermediate_size": 2 * sizes.hidden,
        "num_hidden_layers": sizes.layers,
        "num_attention_heads": sizes.heads,
        "num_key_value_heads": sizes.kv_heads,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        # `rope_parameters` is the field in transformers 5.17 and 5.23 alike (`rope_scaling` is only read as
        # a legacy alias); mrope_section must sum to the rotary dims / 2.
        "rope_parameters": rope_parameters,
        "bos_token_id": ids(PAD_TOKEN),
        "eos_token_id": ids(EOS_TOKEN),
        "pad_token_id": ids(PAD_TOKEN),
        "tie_word_embeddings": True,
    }


def _vision(family: str, sizes: TinySizes) -> dict[str, Any]:
    """Vision-tower fields all three families share, with the family's patch and merge sizes."""
    fam = get_family(family)
    return {
        "depth": sizes.vision_depth,
        "hidden_size": sizes.vision_hidden,
        "intermediate_size": 2 * sizes.vision_hidden,
        "num_heads": sizes.vision_heads,
        "out_hidden_size": sizes.hidden,
        "patch_size": fam.patch_size,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "spatial_merge_size": fam.merge_size,
    }


def _qwen2_5_vl(tokenizer: Any, sizes: TinySizes, max_pixels: int) -> Qwen2_5_VLConfig:
    rope = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": mrope_section(sizes.head_dim)}
    vision = _vision("qwen2_5_vl", sizes) | {
        "window_size": 112,
        "tokens_per_second": 2,
        # The last block attends over the full image, the others within windows, as in the 3B.
        "fullatt_block_indexes": [sizes.vision_depth - 1],
    }
    return Qwen2_5_VLConfig(
        text_config=_text(tokenizer, sizes, rope), vision_config=vision, tie_word_embeddings=True, **_token_ids(tokenizer)
    )


def _position_embeddings(family: str, max_pixels: int) -> int:
    """Learned vision positions: a square grid with as many patches a side as the largest square photo has."""
    side = math.ceil(math.sqrt(max_pixels) / get_family(family).patch_size)
    return max(side, 2) ** 2


def _qwen3_vl(tokenizer: Any, sizes: TinySizes, max_pixels: int) -> Qwen3VLConfig:
    rope = {
        "rope_type": "default",
        "rope_theta": 5_000_000.0,
        "mrope_section": interleaved_mrope_section(sizes.head_dim),
        "mrope_interleaved": True,
    }
    text = _text(tokenizer, sizes, rope) | {"head_dim": sizes.head_dim}
    vision = _vision("qwen3_vl", sizes) | {
        "num_position_embeddings": _position_embeddings("qwen3_vl", max_pixels),
        # DeepStack: features of the first vision blocks (all but the last) are added to the first text layers'
        # image tokens, as Qwen3-VL-4B adds those of blocks 5, 11 and 17 of 24.
        "deepstack_visual_indexes": list(range(max(1, min(sizes.vision_depth - 1, sizes.layers)))),
    }
    return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **_token_ids(tokenizer))


def layer_types(layers: int) -> list[str]:
    """Qwen3.5's hybrid stack: 3 linear-attention layers, then 1 full-attention, ...; the last is always full."""
    if layers < 2:
        raise ValueError(f"Qwen3.5's hybrid text model needs at least 2 layers (linear + full attention), got {layers}")
    return ["full_attention" if (i + 1) % FULL_ATTENTION_INTERVAL == 0 or i == layers - 1 else "linear_attention"
            for i in range(layers)]


def _qwen3_5(tokenizer: Any, sizes: TinySizes, max_pixels: int) -> PretrainedConfig:
    # Imported here: transformers releases before Qwen3.5 still build the other two families.
    from transformers import Qwen3_5Config

    rotary_dim = int(sizes.head_dim * PARTIAL_ROTARY_FACTOR)
    rope = {
        "rope_type": "default",
        "rope_theta": 10_000_000.0,
        "mrope_section": interleaved_mrope_section(rotary_dim),
        "mrope_interleaved": True,
        "partial_rotary_factor": PARTIAL_ROTARY_FACTOR,
    }
    text = _text(tokenizer, sizes, rope) | {
        "head_dim": sizes.head_dim,
        "layer_types": layer_types(sizes.layers),
        # Gated DeltaNet heads at toy size; twice as many value heads as key heads, as in the real models.
        "linear_num_key_heads": max(1, sizes.kv_heads),
        "linear_num_value_heads": 2 * max(1, sizes.kv_heads),
        "linear_key_head_dim": sizes.head_dim // 2,
        "linear_value_head_dim": sizes.head_dim // 2,
        "linear_conv_kernel_dim": 4,
    }
    vision = _vision("qwen3_5", sizes) | {"num_position_embeddings": _position_embeddings("qwen3_5", max_pixels)}
    return Qwen3_5Config(text_config=text, vision_config=vision, tie_word_embeddings=True, **_token_ids(tokenizer))
