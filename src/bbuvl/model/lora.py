"""LoRA adapters (peft) on a loaded VLM: which modules get them, and QLoRA's preparation of a quantised base."""

from __future__ import annotations

import difflib
import re

import torch

from bbuvl.config import LoraConfig

LANGUAGE_MODEL = "language_model"
VISION_BLOCKS = "visual.blocks"


def apply_lora(vlm: torch.nn.Module, lora: LoraConfig) -> torch.nn.Module:
    """Wrap the VLM with LoRA adapters on the language model (and the vision blocks when asked)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model, prepare_model_for_kbit_training

    check_target_modules(vlm, lora.target_modules)
    if lora.bits != 16:  # QLoRA: the base was loaded quantised; cast norms to fp32 and make inputs require grads
        vlm = prepare_model_for_kbit_training(vlm, use_gradient_checkpointing=False)

    # Names, not patterns: peft reads the whole as a regular expression, where `*` was an re.error traceback.
    names = "|".join(re.escape(name) for name in lora.target_modules)
    pattern = rf".*{LANGUAGE_MODEL}.*\.({names})"
    if lora.vision:
        # Read from the model: the families name their vision MLP differently (gate/up/down_proj in Qwen2.5-VL,
        # linear_fc1/2 in Qwen3-VL and Qwen3.5), and a fixed list left the newer families' MLP without adapters.
        vision = "|".join(re.escape(name) for name in sorted(vision_block_linears(vlm)))
        pattern = rf"({pattern})|(.*{re.escape(VISION_BLOCKS)}.*\.({vision}))"
    return get_peft_model(vlm, PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=pattern))


def language_model_linears(vlm: torch.nn.Module) -> set[str]:
    """The last part of the name of every linear layer in the language model (q_proj, gate_proj, ...)."""
    return {name.rsplit(".", 1)[-1] for name, module in vlm.named_modules()
            if f"{LANGUAGE_MODEL}." in name and isinstance(module, torch.nn.Linear)}


def vision_block_linears(vlm: torch.nn.Module) -> set[str]:
    """The last part of the name of every linear layer in the vision tower's blocks (qkv, proj and the MLP's)."""
    return {name.rsplit(".", 1)[-1] for name, module in vlm.named_modules()
            if f"{VISION_BLOCKS}." in name and isinstance(module, torch.nn.Linear)}


def check_target_modules(vlm: torch.nn.Module, names: list[str]) -> None:
    """Raise ValueError naming each of model.lora.target_modules that is no linear layer of the language model.

    peft adapts whatever matches and says nothing of a name that matched nothing beside one that did: a misspelt
    `v_prj` beside `q_proj` trained without adapters on the values.
    """
    linears = language_model_linears(vlm)
    unknown = [name for name in names if name not in linears]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(linears), n=1)
        hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    raise ValueError(f"model.lora.target_modules: {', '.join(hints)} {'is' if len(unknown) == 1 else 'are'} no "
                     f"linear layer of this model's language model; its layers have {', '.join(sorted(linears))}")
