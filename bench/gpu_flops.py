"""Model FLOPs of a training sample and the bf16 peak of known GPUs: what bench/gpu.py's MFU divides.

MFU counts the work the model needs, not what a run executes: real tokens only (a padded row's padding is
wasted time, so it lowers MFU), recomputation under gradient checkpointing not counted, causal attention
counted as half its square. Forward FLOPs of one sample:

- LLM: 2 x (its linear weights) per text token, plus 2 x L^2/2 x (query heads x head dim) x 2 per full-attention
  layer (QK^T and AV over a causal L x L) and, for Gated DeltaNet layers, 4 x (key dim x value dim x value heads)
  per token for the recurrence;
- LM head: 2 x hidden x vocabulary per supervised token (the only positions whose logits are computed,
  model/lm_loss.py);
- vision tower: 2 x (patch embedding and block weights) per patch, 2 x (merger weights) per merged token, and 4 x n x m x hidden
  per block for attention over n patches, m = n (full attention) or the window's patches (Qwen2.5-VL's windowed
  blocks); the detection head is not counted (a few percent of the VLM).

Backward is 2x forward where weights are trained (activation and weight gradients) and 1x where only
activation gradients pass (the LLM's frozen weights under LoRA); a frozen part nothing upstream of needs
gradients (the vision tower under LoRA) costs its forward only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# Dense (no sparsity) bf16 tensor-core peaks from the vendors' data sheets, TFLOP/s; the first name found in
# torch.cuda.get_device_name() wins, so the more specific names come first. Another GPU: --peak-tflops.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("RTX 6000 Ada", 364.0),
    ("RTX A6000", 155.0),
    ("4090", 165.0),
)


def bf16_peak_tflops(device_name: str) -> float | None:
    """The bf16 dense peak of a GPU by its name, or None for an unknown device (and every CPU)."""
    for key, peak in BF16_PEAK_TFLOPS:
        if key in device_name:
            return peak
    return None


def _linear_weights(module: nn.Module) -> int:
    """Weights of every nn.Linear under `module`, LoRA's own adapter layers left out (a percent at most)."""
    return sum(m.weight.numel() for name, m in module.named_modules()
               if isinstance(m, nn.Linear) and "lora_" not in name)


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs of a loaded VLM (counted from its modules and config, not assumed)."""

    llm_linear: int  # linear weights of the decoder layers
    full_layers: int  # full-attention layers
    attention_width: int  # query heads x head dim
    deltanet_layers: int
    deltanet_state: int  # key dim x value dim x value heads (per token, per layer)
    hidden: int
    vocab: int
    patch_weights: int  # the patch embedding's (a 3-D convolution, one matrix product per patch)
    vision_block_linear: int  # linear weights of the vision blocks
    merger_linear: int  # the merger's, and Qwen3-VL's DeepStack mergers' (each runs on every merged token)
    vision_hidden: int
    vision_full_blocks: int
    vision_window_blocks: int
    window_patches: int  # patches per window in a windowed block (0 without windows)
    merge: int  # patches per merged token, per side

    @classmethod
    def of(cls, core: Any) -> "ModelShape":
        """Read the shape of a `...ForConditionalGeneration` (peft's base model for LoRA)."""
        text = core.config.get_text_config()
        vision = core.config.vision_config
        visual = core.model.visual
        types = getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        deltanet = types.count("linear_attention")
        state = 0
        if deltanet:
            state = text.linear_key_head_dim * text.linear_value_head_dim * text.linear_num_value_heads
        deepstack = _linear_weights(visual.deepstack_merger_list) if hasattr(visual, "deepstack_merger_list") else 0
        full_blocks = vision.depth
        window = 0
        if getattr(vision, "fullatt_block_indexes", None) is not None:
            full_blocks = len(vision.fullatt_block_indexes)
            window = (vision.window_size // vision.patch_size) ** 2
        return cls(
            llm_linear=_linear_weights(core.model.language_model.layers),
            full_layers=types.count("full_attention"), attention_width=text.num_attention_heads * head_dim,
            deltanet_layers=deltanet, deltanet_state=state, hidden=text.hidden_size, vocab=text.vocab_size,
            patch_weights=visual.patch_embed.proj.weight.numel(),
            vision_block_linear=_linear_weights(visual.blocks), merger_linear=_linear_weights(visual.merger) + deepstack,
            vision_hidden=vision.hidden_size, vision_full_blocks=full_blocks,
            vision_window_blocks=vision.depth - full_blocks, window_patches=window,
            merge=vision.spatial_merge_size,
        )


@dataclass(frozen=True)
class SampleCounts:
    """One encoded sample's sizes: text tokens, supervised tokens, and patches per image `(t*h*w)`."""

    tokens: int
    supervised: int
    patches: tuple[int, ...]

    @classmethod
    def of(cls, sample: Any) -> "SampleCounts":
        """From an `EncodedSample` (what the dataset yields: input_ids [L], labels [L], image_grid_thw [n, 3])."""
        supervised = int((sample.labels[1:] != -100).sum())
        return cls(int(sample.input_ids.numel()), supervised,
                   tuple(int(t * h * w) for t, h, w in sample.image_grid_thw.tolist()))


def forward_flops(shape: ModelShape, s: SampleCounts) -> dict[str, float]:
    """Forward FLOPs of one sample by part: `{"llm", "lm_head", "vision"}`."""
    L = s.tokens
    llm = 2.0 * shape.llm_linear * L + 2.0 * L * L * shape.attention_width * shape.full_layers
    llm += 4.0 * L * shape.deltanet_state * shape.deltanet_layers
    vision = 0.0
    for n in s.patches:
        vision += 2.0 * (shape.patch_weights + shape.vision_block_linear) * n
        vision += 2.0 * shape.merger_linear * n / shape.merge ** 2
        vision += 4.0 * n * n * shape.vision_hidden * shape.vision_full_blocks
        vision += 4.0 * n * min(n, shape.window_patches) * shape.vision_hidden * shape.vision_window_blocks
    return {"llm": llm, "lm_head": 2.0 * shape.hidden * shape.vocab * s.supervised, "vision": vision}


def training_multipliers(core: nn.Module) -> dict[str, float]:
    """Forward + backward per forward FLOP, per part, from which parameters the loaded model trains."""
    def trains(module: nn.Module, lora: bool = False) -> bool:
        return any(p.requires_grad for n, p in module.named_parameters() if ("lora_" in n) == lora)

    llm = core.model.language_model
    llm_full, llm_lora = trains(llm), trains(llm, lora=True)
    head_trains = trains(core.lm_head) or llm_full
    vision = core.model.visual
    return {
        "llm": 3.0 if llm_full else 2.0 if llm_lora else 1.0,
        "lm_head": 3.0 if head_trains else 2.0 if (llm_full or llm_lora) else 1.0,
        "vision": 3.0 if trains(vision) else 1.0,
    }


def training_flops(shape: ModelShape, multipliers: dict[str, float], samples: list[SampleCounts]) -> float:
    """Model FLOPs of training on `samples` (forward and backward)."""
    total = 0.0
    for s in samples:
        total += sum(multipliers[part] * f for part, f in forward_flops(shape, s).items())
    return total


def device_name(device: str) -> str:
    """A human name of the device: the GPU's name, or the CPU's model where /proc says it."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return f"CPU ({line.split(':', 1)[1].strip()}, {torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"CPU ({torch.get_num_threads()} threads)"
