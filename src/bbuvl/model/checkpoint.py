"""Checkpoint folders: the VLM (`save_pretrained`, safetensors), the detection head, the processor, the run
config, the coordinate contract and the prompt — everything inference needs to reproduce training exactly.

    ckpt/
      config.json, model.safetensors      the VLM (or adapter_config.json + adapter_model.safetensors with LoRA)
      detection_head.safetensors          when the run has a head
      preprocessor_config.json, tokenizer files, chat_template
      bbuvl.yaml                          the run config used
      coordinate_contract.json            min/max pixels of the model frame
      prompt.json                         system prompt, label vocabulary, language
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bbuvl.config import Config, dump_config, load_config
from bbuvl.data.coords import CoordinateContract

HEAD_FILE = "detection_head.safetensors"
CONFIG_FILE = "bbuvl.yaml"
PROMPT_FILE = "prompt.json"


@dataclass
class Prompt:
    """What the model was told: the system prompt, the labels it may answer with, the language."""

    system: str
    labels: list[str]
    lang: str

    def save(self, directory: str | Path) -> None:
        """Write prompt.json."""
        (Path(directory) / PROMPT_FILE).write_text(
            json.dumps({"system": self.system, "labels": self.labels, "lang": self.lang}, ensure_ascii=False, indent=2),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, directory: str | Path) -> "Prompt":
        """Read prompt.json."""
        return cls(**json.loads((Path(directory) / PROMPT_FILE).read_text(encoding="utf-8")))


def is_peft(model: torch.nn.Module) -> bool:
    """True for a peft-wrapped VLM."""
    return hasattr(model, "peft_config")


def save_checkpoint(model: Any, processor: Any, cfg: Config, contract: CoordinateContract, prompt: Prompt,
                    directory: str | Path) -> Path:
    """Write a complete checkpoint folder for a `BBUVLModel`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.vlm.save_pretrained(directory, safe_serialization=True)
    if model.detection_head is not None:
        state = {k: v.detach().contiguous().cpu() for k, v in model.detection_head.state_dict().items()}
        save_file(state, directory / HEAD_FILE, metadata={"format": "pt"})
    processor.save_pretrained(directory)
    (directory / CONFIG_FILE).write_text(dump_config(cfg), encoding="utf-8")
    contract.save(directory)
    prompt.save(directory)
    return directory


def load_weights_into(model: Any, directory: str | Path) -> None:
    """Load a checkpoint's VLM (full or adapter) and head weights into an already built `BBUVLModel` (resume)."""
    from bbuvl.model.vlm import core_model

    directory = Path(directory)
    if is_peft(model.vlm):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model.vlm, load_file(directory / "adapter_model.safetensors"))
    else:
        if not any(directory.glob("model*.safetensors")):
            raise FileNotFoundError(f"{directory}: no model*.safetensors to resume from")
        core = core_model(model.vlm)
        # from_pretrained applies transformers' checkpoint key mapping (saved names differ from module names).
        saved = type(core).from_pretrained(str(directory), dtype=next(core.parameters()).dtype)
        core.load_state_dict(saved.state_dict())
        del saved
    if model.detection_head is not None:
        head_file = directory / HEAD_FILE
        if not head_file.exists():
            raise FileNotFoundError(f"{head_file}: missing, but the config enables the detection head")
        model.detection_head.load_state_dict(load_file(head_file))


def read_run_config(directory: str | Path) -> Config:
    """The config a checkpoint was trained with."""
    return load_config(Path(directory) / CONFIG_FILE)


def load_checkpoint(directory: str | Path, dtype: str | None = None, device: str | None = None) -> tuple[Any, Any, Config, CoordinateContract, Prompt]:
    """A trained `BBUVLModel` (eval mode), its processor, run config, coordinate contract and prompt."""
    from bbuvl.model.loading import load_model_and_processor
    from bbuvl.model.vlm import BBUVLModel

    directory = Path(directory)
    cfg = read_run_config(directory)
    contract = CoordinateContract.load(directory)
    dtype = dtype or cfg.model.dtype
    if (directory / "adapter_config.json").exists():
        from peft import PeftModel

        base, processor = load_model_and_processor(cfg.model.path, dtype=dtype, attn_implementation=cfg.model.attn_implementation,
                                                   min_pixels=contract.min_pixels, max_pixels=contract.max_pixels, device=device)
        from bbuvl.model.loading import load_processor

        processor = load_processor(str(directory), contract.min_pixels, contract.max_pixels)
        vlm = PeftModel.from_pretrained(base, str(directory))
    else:
        vlm, processor = load_model_and_processor(str(directory), dtype=dtype, attn_implementation=cfg.model.attn_implementation,
                                                  min_pixels=contract.min_pixels, max_pixels=contract.max_pixels, device=device)
    model = BBUVLModel.build(vlm, cfg, processor.tokenizer)
    if model.detection_head is not None:
        model.detection_head.load_state_dict(load_file(directory / HEAD_FILE))
        model.detection_head.to(next(vlm.parameters()).device)
    model.eval()
    return model, processor, cfg, contract, Prompt.load(directory)


def merge_lora(src: str | Path, dst: str | Path) -> Path:
    """Fold a LoRA checkpoint's adapters into the base weights and save a plain checkpoint (same head, prompt, contract)."""
    model, processor, cfg, contract, prompt = load_checkpoint(src, dtype="float32")
    if not is_peft(model.vlm):
        raise ValueError(f"{src}: not a LoRA checkpoint (no adapter_config.json)")
    model.vlm = model.vlm.merge_and_unload()
    cfg = cfg.model_copy(deep=True)
    cfg.model.lora.enabled = False
    cfg.model.path = str(dst)
    return save_checkpoint(model, processor, cfg, contract, prompt, dst)
