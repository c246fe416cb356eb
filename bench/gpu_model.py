"""bench/gpu.py's inputs: a randomly initialised model of a real architecture, saved like a checkpoint, and dense photos.

Speed and memory need no pretrained weights: a model of the real shape costs the same per step whatever its
values. The architectures are the published `config.json`s of the shipped configs' checkpoints, held in
`bench/architectures/` so nothing is downloaded. The tokenizer is the project's offline BPE (tiny/tokenizer.py)
with the real vocabulary size kept in the model (embedding and LM head cost what they cost); its special-token
ids replace the checkpoint's. The folder is written with `save_pretrained`, so every row loads it through the
project's one loader, as a downloaded checkpoint would be.
"""

from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForImageTextToText
from transformers.utils import is_torchvision_available

from bbuvl.data.families import IMAGE_TOKEN, VIDEO_TOKEN, VISION_END_TOKEN, VISION_START_TOKEN, get_family
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import ImageRecord, ObjectAnn, write_dataset
from bbuvl.model.processor import image_only_processor_class
from bbuvl.tiny.configs import TEMPORAL_PATCH_SIZE
from bbuvl.tiny.model import IMAGE_STATS
from bbuvl.tiny.templates import chat_template
from bbuvl.tiny.tokenizer import EOS_TOKEN, PAD_TOKEN, train_tokenizer

ARCHITECTURES = Path(__file__).resolve().parent / "architectures"


def architecture_file(model_path: str) -> Path:
    """The held architecture of a config's `model.path` (a hub id or a folder): `bench/architectures/<name>.json`."""
    path = ARCHITECTURES / f"{Path(model_path).name}.json"
    if not path.is_file():
        held = ", ".join(sorted(p.stem for p in ARCHITECTURES.glob("*.json")))
        raise ValueError(f"no architecture held for model.path '{model_path}' (held: {held}); "
                         "pass --arch with that checkpoint's config.json")
    return path


def cut_depth(arch: dict[str, Any], layers: int) -> dict[str, Any]:
    """The architecture with `layers` LLM layers and `layers` vision blocks (widths, vocabulary and heads unchanged)."""
    arch = copy.deepcopy(arch)
    text, vision = arch["text_config"], arch["vision_config"]
    text["num_hidden_layers"] = layers
    if "layer_types" in text:  # Qwen3.5: keep the 3 linear : 1 full pattern, ending on a full-attention layer
        text["layer_types"] = ["full_attention" if (i + 1) % 4 == 0 or i == layers - 1 else "linear_attention"
                               for i in range(layers)]
    vision["depth"] = layers
    if "fullatt_block_indexes" in vision:  # Qwen2.5-VL: the last block attends over the whole image
        vision["fullatt_block_indexes"] = [i for i in vision["fullatt_block_indexes"] if i < layers - 1] + [layers - 1]
    if vision.get("deepstack_visual_indexes"):  # Qwen3-VL: DeepStack taps must exist and feed existing LLM layers
        vision["deepstack_visual_indexes"] = [i for i in vision["deepstack_visual_indexes"] if i < layers - 1] or [0]
    return arch


def _image_processor(family: str, max_pixels: int) -> Any:
    """The Qwen2-VL image processor (torchvision's where it imports, else PIL's) with the family's patching."""
    if is_torchvision_available():
        from transformers import Qwen2VLImageProcessor as cls
    else:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil as cls
    fam = get_family(family)
    mean, std = IMAGE_STATS[family]
    return cls(min_pixels=fam.factor ** 2, max_pixels=max_pixels, patch_size=fam.patch_size,
               temporal_patch_size=TEMPORAL_PATCH_SIZE, merge_size=fam.merge_size, image_mean=mean, image_std=std)


def build_model_folder(arch: dict[str, Any], out: Path, dtype: torch.dtype, device: str, max_pixels: int,
                       seed: int = 0) -> dict[str, int]:
    """Write a randomly initialised model of `arch` (HF config.json dict) with the offline tokenizer to `out`.

    Returns the parameter counts `{"total", "vision"}`.
    """
    family = arch["model_type"]
    tokenizer = train_tokenizer(seed=seed, family=family)
    ids = tokenizer.convert_tokens_to_ids
    arch = copy.deepcopy(arch)
    arch.update(image_token_id=ids(IMAGE_TOKEN), video_token_id=ids(VIDEO_TOKEN),
                vision_start_token_id=ids(VISION_START_TOKEN), vision_end_token_id=ids(VISION_END_TOKEN))
    arch["text_config"].update(bos_token_id=ids(PAD_TOKEN), eos_token_id=ids(EOS_TOKEN), pad_token_id=ids(PAD_TOKEN))
    if len(tokenizer) > arch["text_config"]["vocab_size"]:
        raise ValueError(f"the offline tokenizer has {len(tokenizer)} tokens, more than the architecture's vocabulary")
    config = AutoConfig.for_model(**arch)
    torch.manual_seed(seed)
    with torch.device(device):  # initialising 4B parameters is minutes on a CPU, seconds on a GPU
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = [ids(EOS_TOKEN), ids(PAD_TOKEN)]
    model.generation_config.pad_token_id = ids(PAD_TOKEN)
    model.generation_config.do_sample = False
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor = image_only_processor_class(family)(_image_processor(family, max_pixels), tokenizer,
                                                   chat_template=chat_template(family))
    processor.save_pretrained(out)
    counts = {"total": sum(p.numel() for p in model.parameters()),
              "vision": sum(p.numel() for p in model.model.visual.parameters())}
    del model
    return counts


def frame_for(tokens: int, factor: int) -> tuple[int, int]:
    """A 4:3 photo size, in multiples of `factor`, holding at most `tokens` vision tokens (one per factor x factor)."""
    cols = max(1, math.floor(math.sqrt(tokens * 4 / 3)))
    rows = max(1, tokens // cols)
    return cols * factor, rows * factor


def dense_records(n: int, size: tuple[int, int], objects: int, folder: Path, seed: int = 0) -> list[ImageRecord]:
    """`n` records of `objects` boxes each (labels from the default hierarchy), on noise photos saved in `folder`.

    One photo file serves every record: decoding is the same work whichever photo it is, and pixel values do
    not change a step's cost.
    """
    rng = random.Random(seed)
    labels = Hierarchy.load().labels()
    w, h = size
    folder.mkdir(parents=True, exist_ok=True)
    photo = folder / "photo.png"
    pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    records = []
    for i in range(n):
        boxes = []
        for k in range(objects):
            bw, bh = rng.uniform(0.04, 0.2) * w, rng.uniform(0.04, 0.2) * h
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            boxes.append(ObjectAnn(bbox_2d=[x, y, x + bw, y + bh], desc=labels[(i + k) % len(labels)]))
        records.append(ImageRecord(images=[photo.name], width=w, height=h, objects=boxes, id=f"dense-{i}"))
    return records


def write_dense_dataset(folder: Path, n: int, size: tuple[int, int], objects: int, teachers: int = 4) -> tuple[Path, Path]:
    """train.jsonl (n records) and teachers.jsonl (`teachers` records) in `folder`; returns both paths."""
    train, pool = folder / "train.jsonl", folder / "teachers.jsonl"
    ours = {train.name, pool.name, "photo.png"}
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in ours) if folder.is_dir() else []
    if foreign:
        raise ValueError(f"{folder} holds files this benchmark did not write ({', '.join(foreign[:3])}); "
                         "give --work an empty or new folder")
    write_dataset(train, dense_records(n, size, objects, folder, seed=0))
    write_dataset(pool, dense_records(teachers, size, objects, folder, seed=1))
    return train, pool


def read_architecture(path: Path) -> dict[str, Any]:
    """An HF config.json as a dict; ValueError naming the file when it is not one of the supported families."""
    arch = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(arch, dict) or "text_config" not in arch or "vision_config" not in arch:
        raise ValueError(f"{path}: not a vision-language config.json (no text_config / vision_config)")
    get_family(arch.get("model_type", ""))
    return arch
