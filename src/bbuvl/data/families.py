"""The model families bbu-vl trains, one entry each: what differs between them, and nothing else (docs/families.md).

A family is read from a checkpoint's `config.json` `model_type`, never from its folder name: a folder called
`qwen3-vl-finetuned` may hold anything. The entry says how the family resizes photos (patch x merge = the
factor sides are multiples of), how its answers write boxes (absolute pixels of the resized frame, or integers
relative to the image's sides), what its chat template puts before an answer, and whether packed rows can
isolate their samples in every layer type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bbuvl.data.jsonfile import read_json
from bbuvl.paths import check_model_source

# How answers write boxes: absolute pixels of the resized frame, or integers relative to the image's sides.
# (Not the detection head's cxcywh/xyxy layout, which is `model/box_ops.py:BoxFormat`.)
BoxConvention = Literal["absolute", "relative"]

# The relative families write every coordinate as round(1000 * x / side), so 0 is the left/top edge and 1000 the
# right/bottom one. Qwen's own grounding examples decode with `x / 1000 * side`; the alternative (999 as the far
# edge) would put every decoded box 0.1% off in exactly the way users report as "shifted boxes".
RELATIVE_SCALE = 1000


@dataclass(frozen=True)
class Family:
    """What one model family needs from bbu-vl."""

    model_type: str  # config.json's model_type
    name: str  # what users call it
    patch_size: int  # vision patch side in pixels
    merge_size: int  # patches merged per side into one LLM token
    box_format: BoxConvention
    processor_class: str  # the stock transformers processor named by real checkpoints
    # Text the family's chat template writes between "<TURN_START>assistant\n" and a non-thinking answer.
    assistant_prefix: str
    # Whether a packed row keeps its samples apart in every layer type on the backends bbu-vl runs.
    packs_isolated: bool
    packing_note: str
    example_checkpoints: tuple[str, ...]
    # How the system prompt describes the box convention, per prompt language: the wording of the family's own
    # grounding examples.
    box_wording: dict[str, str]

    @property
    def factor(self) -> int:
        """Side multiple of every resized photo: one merged LLM token covers factor x factor pixels."""
        return self.patch_size * self.merge_size


# The chat's turn delimiters (same in all three families): a turn is `<|im_start|>role\n...<|im_end|>\n`, and
# `<|im_end|>` is also what ends an answer (the eos generation stops at).
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"
# The vision special tokens (same names in all three families; their ids differ per tokenizer).
IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
VISION_START_TOKEN = "<|vision_start|>"
VISION_END_TOKEN = "<|vision_end|>"
VISION_SPECIAL_TOKENS = {"image_token_id": IMAGE_TOKEN, "video_token_id": VIDEO_TOKEN,
                         "vision_start_token_id": VISION_START_TOKEN, "vision_end_token_id": VISION_END_TOKEN}
ABSOLUTE_WORDING = {"zh": "坐标是图像中的像素（左、上、右、下）",
                    "en": "coordinates are image pixels (left, top, right, bottom)"}
RELATIVE_WORDING = {"zh": "坐标是相对坐标，把图像的宽和高都归一化到0到1000（左、上、右、下）",
                    "en": "coordinates are relative, the image's width and height each scaled to 0-1000 "
                          "(left, top, right, bottom)"}

FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family(
            model_type="qwen2_5_vl", name="Qwen2.5-VL", patch_size=14, merge_size=2, box_format="absolute",
            processor_class="Qwen2_5_VLProcessor", assistant_prefix="", packs_isolated=True,
            packing_note="full attention everywhere: the per-sample text positions isolate packed samples",
            example_checkpoints=("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"),
            box_wording=ABSOLUTE_WORDING,
        ),
        Family(
            model_type="qwen3_vl", name="Qwen3-VL", patch_size=16, merge_size=2, box_format="relative",
            processor_class="Qwen3VLProcessor", assistant_prefix="", packs_isolated=True,
            packing_note="full attention everywhere (DeepStack adds features at image tokens only): the per-sample "
                         "text positions isolate packed samples",
            example_checkpoints=("Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"),
            box_wording=RELATIVE_WORDING,
        ),
        Family(
            model_type="qwen3_5", name="Qwen3.5", patch_size=16, merge_size=2, box_format="relative",
            processor_class="Qwen3VLProcessor", assistant_prefix="<think>\n\n</think>\n\n", packs_isolated=False,
            packing_note="its Gated DeltaNet (linear-attention) layers and their causal convolution carry state along "
                         "the whole row: transformers' torch kernels take no sequence boundaries, so packed samples "
                         "would read each other",
            example_checkpoints=("Qwen/Qwen3.5-0.8B", "Qwen/Qwen3.5-2B", "Qwen/Qwen3.5-4B"),
            box_wording=RELATIVE_WORDING,
        ),
    )
}
DEFAULT_FAMILY = "qwen2_5_vl"


def get_family(model_type: str) -> Family:
    """The family of a `config.json` `model_type`; ValueError listing the supported ones otherwise."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ValueError(f"model_type '{model_type}' is not a model family bbu-vl supports; supported: "
                         f"{', '.join(f'{k} ({f.name})' for k, f in FAMILIES.items())}") from None


# Seconds one question to the hub may take before a model is loaded from it (check_hub_reachable).
HUB_PROBE_TIMEOUT_S = 10.0


def hub_offline() -> bool:
    """Whether the user switched the Hugging Face hub off (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE, read as the hub reads them)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in ("1", "ON", "YES", "TRUE")


def check_hub_reachable(path: str) -> None:
    """OSError at once when `path` is no local folder, no model of that name is in the Hugging Face cache, and the hub
    cannot be reached or has no such model: loading would retry every file for minutes (2.5 on a machine without
    network) and then name neither the model nor the reason. Nothing is asked when the hub is switched off."""
    if Path(path).exists() or hub_offline():
        return
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    try:
        if isinstance(try_to_load_from_cache(path, "config.json"), str):
            return
    except ValueError:  # not even a valid hub id: the loader says so
        return
    try:
        HfApi().model_info(path, timeout=HUB_PROBE_TIMEOUT_S)
    except (GatedRepoError, OfflineModeIsEnabled):
        return  # the download says what access it needs; switched off as the hub library was imported: its cache
    except RepositoryNotFoundError:
        raise OSError(f"{path}: no local folder of that name, and the Hugging Face hub has no model of that name "
                      "that this machine may read (a private one needs `hf auth login`); give a local model "
                      "folder") from None
    except HfHubHTTPError:
        return  # the hub answered: the download says what is wrong
    except Exception as e:  # noqa: BLE001 - the network, whichever HTTP library raised it
        if "Connect" not in type(e).__name__ and not isinstance(e, OSError):
            return  # a slow answer (a read timeout) is no proof the downloads will fail
        first = (str(e).splitlines() or [""])[0][:200]
        raise OSError(f"{path}: no local folder of that name, and the Hugging Face hub cannot be reached "
                      f"({type(e).__name__}: {first}); give a local model folder, or set HF_HUB_OFFLINE=1 to read "
                      "the hub's cache alone") from None


def model_type_of(path: str | Path, offline: bool = False) -> str:
    """The `model_type` in a checkpoint's `config.json`: a local folder, else a hub id through the Hugging Face cache.

    `offline`: the cache alone answers a hub id, never the network (checks that must work before a download).
    """
    if Path(path).is_dir():
        missing = f"{path}: no config.json: not a Hugging Face model folder"
        if (Path(path) / "adapter_config.json").is_file():  # a LoRA run's checkpoint holds the adapters alone
            missing = (f"{path}: a LoRA checkpoint (adapter_config.json, no config.json): it holds adapters, not a "
                       "model; use its base model here, or merge the adapters into one first (bbuvl model merge-lora)")
        return _read_model_type(Path(path) / "config.json", missing=missing)
    check_model_source(str(path))
    from huggingface_hub import try_to_load_from_cache

    # The cache is read directly: transformers' local_files_only still lets the hub library fetch its own
    # registries, so it is not "no network".
    try:
        cached = try_to_load_from_cache(str(path), "config.json")
    except ValueError:  # not even a valid hub id
        cached = None
    if isinstance(cached, str):
        return _read_model_type(Path(cached), missing="")
    if offline or hub_offline():
        raise ValueError(f"'{path}' is not a local folder, and no model of that name is in the Hugging Face cache "
                         "(the hub was not asked); give a local model folder, or set model.family")
    from transformers import AutoConfig

    check_hub_reachable(str(path))
    try:
        return AutoConfig.from_pretrained(str(path)).model_type
    except Exception as e:  # noqa: BLE001 - any failure means the same thing to the user
        first_line = (str(e).splitlines() or [""])[0][:200]
        raise ValueError(f"cannot read the model family of '{path}' ({type(e).__name__}: {first_line}); "
                         "give a local model folder, or set model.family") from None


def _read_model_type(config: Path, missing: str) -> str:
    """`model_type` of one config.json; ValueError `missing` when there is no file, or naming what is wrong with it."""
    if not config.is_file():
        raise ValueError(missing)
    data = read_json(config)
    if not isinstance(data, dict):
        raise ValueError(f"{config}: not a JSON object")
    model_type = data.get("model_type")
    if not isinstance(model_type, str):
        raise ValueError(f"{config}: no model_type: not a Hugging Face model folder")
    return model_type


def family_of(path: str | Path, offline: bool = False) -> Family:
    """The family of the checkpoint at `path` (folder or hub id), from its config.json, never its name."""
    try:
        return get_family(model_type_of(path, offline))
    except ValueError as e:
        if str(e).startswith("model_type '"):  # the type was read: say from where
            raise ValueError(f"{Path(path) / 'config.json' if Path(path).is_dir() else path}: {e}") from None
        raise
