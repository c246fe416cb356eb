"""Image backbones that turn crops into embedding vectors: CLIP's image tower, DINOv2, ResNet-50, raw pixels.

Each learned backbone is loaded with `from_pretrained` (local folder or hub id) together with its own image
processor, so a crop is resized, cropped and normalised exactly as the backbone was trained (troubleshooting
log: a ResNet fed CLIP's statistics, or BGR pixels, loses accuracy without any error). The rules from that
log hold for every batch: RGB in, float32, `eval()` + `torch.inference_mode()`, outputs copied to CPU numpy
at once so no tensor outlives its batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from bbuvl.data.families import check_hub_reachable
from bbuvl.data.images import to_rgb
from bbuvl.paths import check_model_source

# Bump when the way pixels become vectors changes (crop, RGB handling, pooling): old cache entries then miss.
EMBED_VERSION = 1

PIXELS = "pixels"
PIXELS_DEFAULT_SIDE = 16
# A vector is side * side * 3 floats per photo, in every batch, support matrix and cache entry: pixels:100000 asked
# for 1006 GiB a batch and died in numpy. 256 (768 KB a vector) is far past where raw pixels stop helping.
PIXELS_MAX_SIDE = 256

# config.model_type -> our kind. A full CLIP checkpoint ("clip") loads its image tower and projection only.
MODEL_TYPES = {"clip": "clip", "clip_vision_model": "clip", "dinov2": "dinov2", "resnet": "resnet"}
KINDS = ("clip", "dinov2", "resnet", PIXELS)

ChannelOrder = Literal["RGB", "BGR"]


def as_rgb(image: Image.Image | np.ndarray, order: ChannelOrder = "RGB") -> Image.Image:
    """An RGB PIL image from a PIL image of any mode or a uint8 array (HxW grey, HxWx1/3/4, `order` RGB or BGR).

    OpenCV arrays are BGR: pass `order="BGR"`, or red and blue swap silently (troubleshooting log).
    """
    if isinstance(image, Image.Image):
        return to_rgb(image)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got {arr.dtype}; scale it to 0..255 first")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return Image.fromarray(arr, mode="L").convert("RGB")
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image array, got shape {arr.shape}")
    if order == "BGR":
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
    return to_rgb(Image.fromarray(np.ascontiguousarray(arr), mode="RGBA" if arr.shape[2] == 4 else "RGB"))


class Backbone(Protocol):
    """Anything that embeds a batch of RGB images into vectors of a fixed size."""

    kind: str
    key: str  # identifies weights + preprocessing; part of every cache key

    @property
    def dim(self) -> int:
        """Length of one embedding vector."""
        ...

    def embed(self, images: Sequence[Image.Image | np.ndarray], order: ChannelOrder = "RGB") -> np.ndarray:
        """`[len(images), dim]` float32 embeddings, on the CPU."""
        ...


@dataclass
class PixelBackbone:
    """The raw-pixel baseline: the image resized to `side` x `side`, flattened and centred (zero mean).

    Centring makes cosine similarity the correlation of the two thumbnails, so a uniformly brighter photo
    of the same part still scores high; without it every pair of photos scores close to 1.
    """

    side: int = PIXELS_DEFAULT_SIDE
    kind: str = PIXELS
    key: str = field(init=False)

    def __post_init__(self) -> None:
        if not 2 <= self.side <= PIXELS_MAX_SIDE:
            raise ValueError(f"pixel backbone side must be 2 to {PIXELS_MAX_SIDE}, got {self.side} (each photo becomes "
                             "side x side x 3 numbers)")
        self.key = f"{PIXELS}:side={self.side}:v{EMBED_VERSION}"

    @property
    def dim(self) -> int:
        """Embedding size: side * side * 3."""
        return self.side * self.side * 3

    def embed(self, images: Sequence[Image.Image | np.ndarray], order: ChannelOrder = "RGB") -> np.ndarray:
        """`[n, side*side*3]` float32 centred thumbnails."""
        out = np.empty((len(images), self.dim), dtype=np.float32)
        for i, image in enumerate(images):
            thumb = as_rgb(image, order).resize((self.side, self.side), Image.Resampling.BILINEAR)
            v = np.asarray(thumb, dtype=np.float32).reshape(-1) / 255.0
            out[i] = v - v.mean()
        return out


@dataclass
class HFBackbone:
    """A transformers vision model with its own image processor, run in eval mode on one device."""

    kind: str
    model: torch.nn.Module
    processor: Any
    key: str
    device: torch.device
    _dim: int = 0

    @property
    def dim(self) -> int:
        """Embedding size (found by embedding one blank image the first time it is asked)."""
        if not self._dim:
            self._dim = int(self.embed([Image.new("RGB", (8, 8))]).shape[1])
        return self._dim

    def embed(self, images: Sequence[Image.Image | np.ndarray], order: ChannelOrder = "RGB") -> np.ndarray:
        """`[n, dim]` float32: CLIP's projected image embedding, DINOv2's pooled CLS, ResNet's global pool."""
        rgb = [as_rgb(im, order) for im in images]
        inputs = self.processor(images=rgb, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, torch.float32)
        with torch.inference_mode():
            out = self.model(pixel_values=pixel_values)
            feats = out.image_embeds if self.kind == "clip" else out.pooler_output  # [n, D] or ResNet's [n, C, 1, 1]
            vectors = feats.reshape(feats.shape[0], -1).float().cpu().numpy()
        del out, feats, pixel_values, inputs  # nothing of this batch survives it (troubleshooting log, memory)
        return vectors


def model_class(kind: str) -> Any:
    """The transformers class that loads a backbone of `kind` (its embedding output included)."""
    import transformers

    return {
        "clip": transformers.CLIPVisionModelWithProjection,
        "dinov2": transformers.Dinov2Model,
        "resnet": transformers.ResNetModel,
    }[kind]


def detect_kind(path: str) -> str:
    """The backbone kind of a checkpoint folder or hub id, from its config's `model_type`."""
    from transformers import AutoConfig

    try:
        check_model_source(path, "backbone")
    except ValueError as e:
        raise ValueError(f"{e}; give '{PIXELS}' or '{PIXELS}:SIDE', or build one with `bbuvl fewshot tiny-backbone`") from None
    try:
        check_hub_reachable(path)  # a hub id the hub cannot answer: at once, not after minutes of retries
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{path}: not a backbone checkpoint ({e}); give a folder with config.json, "
            f"'{PIXELS}' or '{PIXELS}:SIDE', or build one with `bbuvl fewshot tiny-backbone`"
        ) from None
    kind = MODEL_TYPES.get(config.model_type)
    if kind is None:
        raise ValueError(
            f"{path}: model_type '{config.model_type}' is not a supported backbone "
            f"(supported: {', '.join(sorted(MODEL_TYPES))})"
        )
    return kind


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes): the weights actually loaded."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # hashed in place: no copy of the weights
    return h.hexdigest()


def _check_weights(spec: str) -> None:
    """ValueError naming a backbone folder's weights file that is cut short or damaged: safetensors' own error was a
    traceback ('incomplete metadata, file not fully covered') naming no file; or the folder, where safetensors cannot
    open a file by its path (data/input_paths.py, `model_files_path_problem`)."""
    from bbuvl.data.input_paths import model_files_path_problem
    from bbuvl.model.checkpoint import verify_safetensors

    folder = Path(spec)
    if folder.is_dir() and (problem := model_files_path_problem(folder)) is not None:
        raise ValueError(f"{spec}: its weights cannot be read: {problem}")
    for weights in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        verify_safetensors(weights)


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` -> the GPU when there is one, else the CPU; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_backbone(spec: str, device: str = "auto") -> Backbone:
    """Load a backbone: `pixels` / `pixels:SIDE`, or a CLIP / DINOv2 / ResNet checkpoint folder or hub id."""
    if spec == PIXELS or spec.startswith(PIXELS + ":"):
        side = spec.partition(":")[2]
        if side and not side.isdigit():
            raise ValueError(f"backbone '{spec}': the pixel side must be a whole number, e.g. '{PIXELS}:16'")
        return PixelBackbone(int(side) if side else PIXELS_DEFAULT_SIDE)
    from transformers import AutoImageProcessor

    kind = detect_kind(spec)
    try:
        processor = AutoImageProcessor.from_pretrained(spec)
    except (OSError, ValueError) as e:
        raise ValueError(f"{spec}: cannot load the image processor (preprocessor_config.json): {e}") from None
    _check_weights(spec)
    model = model_class(kind).from_pretrained(spec, dtype=torch.float32)
    model.eval()
    prep = json.dumps({"class": type(processor).__name__, **processor.to_dict()}, sort_keys=True, default=str)
    # The architecture too: the same weights under another activation or head count are another model, whose cached
    # vectors were the old one's
    arch = model.config.to_json_string(use_diff=False)
    key = hashlib.sha256(
        f"{kind}|v{EMBED_VERSION}|{weights_digest(model)}|{prep}|{arch}".encode()
    ).hexdigest()
    dev = resolve_device(device)
    return HFBackbone(kind=kind, model=model.to(dev), processor=processor, key=f"{kind}:{key[:32]}", device=dev)
