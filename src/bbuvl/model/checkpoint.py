"""Checkpoint folders: the VLM (`save_pretrained`, safetensors), the detection head, the processor, the run
config, the coordinate contract and the prompt — everything inference needs to reproduce training exactly.

    ckpt/
      config.json, model.safetensors      the VLM (or adapter_config.json + adapter_model.safetensors with LoRA)
      detection_head.safetensors          when the run has a head
      vision_positions.safetensors        when the run adds absolute positions to the vision tokens
      preprocessor_config.json, tokenizer files, chat_template
      bbuvl.yaml                          the run config used
      coordinate_contract.json            min/max pixels of the model frame
      prompt.json                         system prompt, label vocabulary, language
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bbuvl.atomic import atomic_path, write_text_atomic
from bbuvl.config import Config, dump_config, load_config
from bbuvl.data.coords import CONTRACT_FILE, CoordinateContract
from bbuvl.data.families import family_of
from bbuvl.data.jsonfile import read_json

HEAD_FILE = "detection_head.safetensors"
POSITIONS_FILE = "vision_positions.safetensors"
CONFIG_FILE = "bbuvl.yaml"
PROMPT_FILE = "prompt.json"


class CheckpointError(ValueError):
    """A checkpoint folder that is incomplete or damaged (a save killed half-way, a truncated copy)."""


@dataclass
class Prompt:
    """What the model was told: the system prompt, the labels it may answer with, the language."""

    system: str
    labels: list[str]
    lang: str

    def save(self, directory: str | Path) -> None:
        """Write prompt.json."""
        write_text_atomic(Path(directory) / PROMPT_FILE,
                          json.dumps({"system": self.system, "labels": self.labels, "lang": self.lang}, ensure_ascii=False, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> "Prompt":
        """Read prompt.json."""
        return cls(**read_json(Path(directory) / PROMPT_FILE, "prompt file"))


def is_peft(model: torch.nn.Module) -> bool:
    """True for a peft-wrapped VLM."""
    return hasattr(model, "peft_config")


def save_checkpoint(model: Any, processor: Any, cfg: Config, contract: CoordinateContract, prompt: Prompt,
                    directory: str | Path) -> Path:
    """Write a complete checkpoint folder for a `BBUVLModel`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.vlm.save_pretrained(directory, safe_serialization=True)
    for module, name in ((model.detection_head, HEAD_FILE), (model.vision_positions, POSITIONS_FILE)):
        if module is not None:
            state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
            with atomic_path(directory / name) as tmp:
                save_file(state, tmp, metadata={"format": "pt"})
    processor.save_pretrained(directory)
    write_text_atomic(directory / CONFIG_FILE, dump_config(cfg))
    contract.save(directory)
    prompt.save(directory)
    return directory


def verify_safetensors(path: Path) -> None:
    """Raise CheckpointError when a safetensors file is shorter or longer than its own header says (cut short, damaged)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        try:
            header = json.loads(fh.read(n)) if 0 < n <= size - 8 else None
        except ValueError:
            header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: damaged safetensors header (a copy or save cut short?); re-copy it or use another checkpoint")
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if size != 8 + n + end:
        raise CheckpointError(f"{path}: {size} bytes, its header says {8 + n + end} (a copy or save cut short?); "
                              "re-copy it or use another checkpoint")


TRAINING_FILES = (CONFIG_FILE, CONTRACT_FILE, PROMPT_FILE)  # what `bbuvl train` adds to a model folder


def _has_training_files(directory: Path) -> bool:
    return any((directory / f).exists() for f in TRAINING_FILES)


def is_plain_model_folder(directory: str | Path) -> bool:
    """A model folder (config.json) holding none of the files `bbuvl train` writes: a base model, never trained here.

    A folder with some of them is a damaged checkpoint, and one without config.json no model at all.
    """
    directory = Path(directory)
    return (directory / "config.json").is_file() and not _has_training_files(directory)


def checkpoint_problem(directory: str | Path) -> str | None:
    """Why a checkpoint folder is not complete (None when it is): a missing file, a cut-short weights file."""
    directory = Path(directory)
    for name in TRAINING_FILES:
        if not (directory / name).is_file():
            return f"{name} missing"
    weights = sorted(directory.glob("*.safetensors"))
    if not any(w.name.startswith(("model", "adapter_model")) for w in weights):
        return "no model*.safetensors or adapter_model.safetensors"
    for w in weights:
        try:
            verify_safetensors(w)
        except CheckpointError as e:
            return str(e).split(";")[0]
    return None


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
    load_extra_modules(model, directory)


def load_extra_modules(model: Any, directory: str | Path) -> None:
    """Load the detection head and vision positions a built `BBUVLModel` has from a checkpoint folder."""
    device = next(model.vlm.parameters()).device
    for module, name, what in ((model.detection_head, HEAD_FILE, "detection.enabled"),
                               (model.vision_positions, POSITIONS_FILE, "model.vision_positions")):
        if module is None:
            continue
        file = Path(directory) / name
        if not file.exists():
            raise FileNotFoundError(f"{file}: missing, but the checkpoint's config sets {what}")
        module.load_state_dict(load_file(file))
        module.to(device)


def read_run_config(directory: str | Path) -> Config:
    """The config a checkpoint was trained with."""
    return load_config(Path(directory) / CONFIG_FILE)


def load_checkpoint(directory: str | Path, dtype: str | None = None, device: str | None = None) -> tuple[Any, Any, Config, CoordinateContract, Prompt]:
    """A trained `BBUVLModel` (eval mode), its processor, run config, coordinate contract and prompt."""
    from bbuvl.model.loading import load_model_and_processor
    from bbuvl.model.vlm import BBUVLModel

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such checkpoint folder")
    problem = checkpoint_problem(directory)
    if problem:
        raise CheckpointError(f"{directory}: incomplete or damaged checkpoint ({problem}); use another checkpoint or re-copy it")
    cfg = read_run_config(directory)
    contract = CoordinateContract.load(directory)
    dtype = dtype or cfg.model.dtype
    if (directory / "adapter_config.json").exists():
        from peft import PeftModel

        base, processor = load_model_and_processor(cfg.model.path, dtype=dtype, attn_implementation=cfg.model.attn_implementation,
                                                   frame=contract, device=device)
        from bbuvl.model.loading import load_processor

        processor = load_processor(str(directory), contract)
        vlm = PeftModel.from_pretrained(base, str(directory))
    else:
        vlm, processor = load_model_and_processor(str(directory), dtype=dtype, attn_implementation=cfg.model.attn_implementation,
                                                  frame=contract, device=device)
    if "vision_positions" not in cfg.model.model_fields_set and not (directory / POSITIONS_FILE).exists():
        cfg.model.vision_positions = False  # trained before vision positions existed
    model = BBUVLModel.build(vlm, cfg, processor.tokenizer)
    load_extra_modules(model, directory)
    model.eval()
    return model, processor, cfg, contract, Prompt.load(directory)


def load_base_model(path: str | Path, labels: list[str], cfg: Config | None = None, lang: str | None = None,
                    dtype: str | None = None, device: str | None = None) -> tuple[Any, Any, Config, CoordinateContract, Prompt]:
    """A plain Hugging Face model folder (never trained here) ready to predict, as `load_checkpoint` returns one.

    Without `cfg` the family's own contract applies: the checkpoint processor's pixel bounds within the default
    vision-token budget, generate mode only (no head, no vision positions). With `cfg` (a run config to check
    before training) its frame, head and positions are built exactly as `bbuvl train` would build them.
    """
    from bbuvl.data.labels import Hierarchy
    from bbuvl.encode.prompts import system_prompt
    from bbuvl.model.loading import load_model_and_processor
    from bbuvl.model.processor import pixel_range
    from bbuvl.model.vlm import BBUVLModel

    path = Path(path)
    if _has_training_files(path):
        raise ValueError(f"{path}: a checkpoint written by bbu-vl (it has {CONFIG_FILE} or its companions); "
                         "load it with load_checkpoint")
    family = family_of(path)
    own_frame = cfg is None
    if own_frame:
        cfg = Config()
        cfg.model.family, cfg.detection.enabled, cfg.model.vision_positions = family.model_type, False, False
    else:
        cfg = cfg.model_copy(deep=True)
    cfg.model.path = str(path)
    if lang is not None:
        cfg.data.lang = lang
    if not own_frame and cfg.model.resolve_family() is not family:  # before minutes of loading
        raise ValueError(f"the config says model.family {cfg.model.family} but {path} holds a {family.model_type} model")
    vlm, processor = load_model_and_processor(str(path), dtype=dtype or cfg.model.dtype, device=device,
                                              frame=None if own_frame else cfg.model.frame(),
                                              attn_implementation=cfg.model.attn_implementation)
    if own_frame:  # the folder's own processor bounds (already the processor's: nothing to set)
        cfg.model.min_pixels, cfg.model.max_pixels = pixel_range(processor)
    contract = cfg.model.frame()
    hierarchy = Hierarchy.load(cfg.data.hierarchy)
    prompt = Prompt(system_prompt(labels, hierarchy, cfg.data.lang, contract.family), labels, cfg.data.lang)
    model = BBUVLModel.build(vlm, cfg, processor.tokenizer)
    if device is not None:
        model.to(device)
    return model.eval(), processor, cfg, contract, prompt


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
