"""LoRA adapters (peft) on a loaded VLM: which modules get them, and QLoRA's preparation of a quantised base."""

from __future__ import annotations

import torch

from bbuvl.config import LoraConfig


def apply_lora(vlm: torch.nn.Module, lora: LoraConfig) -> torch.nn.Module:
    """Wrap the VLM with LoRA adapters on the language model (and the vision blocks when asked)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    if lora.bits != 16:  # QLoRA: the base was loaded quantised; cast norms to fp32 and make inputs require grads
        vlm = prepare_model_for_kbit_training(vlm, use_gradient_checkpointing=False)

    names = "|".join(lora.target_modules)
    pattern = rf".*language_model.*\.({names})"
    if lora.vision:
        pattern = rf"({pattern})|(.*visual\.blocks.*\.(qkv|proj|gate_proj|up_proj|down_proj))"
    return get_peft_model(vlm, PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=pattern))
