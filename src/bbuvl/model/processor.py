"""Image-only Qwen processors: the stock ones minus the video processor, so they work without torchvision.

Stock `Qwen2_5_VLProcessor` and `Qwen3VLProcessor` (named by Qwen3-VL and Qwen3.5 checkpoints alike) require a
video processor, and the video processor requires torchvision, whose only wheel for our CPU torch cannot be
imported. Images are all bbu-vl feeds the model, so each subclass keeps the stock image path (the same
`replace_image_token`, `mm_token_type_ids`, chat template) and drops video. Importing this module registers
them with `AutoProcessor` for every family's config; without that, AutoProcessor on our saved folders silently
falls back to returning the bare tokenizer. transformers 5.17/5.18 ignore that registration for a built-in
config class, and a stock checkpoint names its stock processor outright: for both,
`bbuvl.model.loading.load_processor` falls back to the family's class here.

Saved, they name the stock class (`Qwen2_5_VLProcessor`, `Qwen3VLProcessor`) in `processor_config.json` and
`tokenizer_config.json`: a folder bbu-vl writes is then a stock folder, which stock `AutoProcessor` loads as the
full processor wherever torchvision imports, and bbu-vl's loader maps back to the stand-in where it does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoProcessor
from transformers.image_utils import SizeDict
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor
from transformers.processing_utils import ProcessorMixin

from bbuvl.atomic import write_text_atomic
from bbuvl.data.coords import CoordinateContract
from bbuvl.data.families import FAMILIES, IMAGE_TOKEN, VIDEO_TOKEN, VISION_END_TOKEN, VISION_START_TOKEN, get_family
from bbuvl.data.input_paths import model_files_path_problem
from bbuvl.model.checkpoint_files import IMAGE_PROCESSOR_FILE, saved_image_processor


class ImageOnlyMixin:
    """A stock Qwen processor with an image processor and a tokenizer only (no video processor, no torchvision).

    Calling it returns `input_ids` with one `<|image_pad|>` per merged patch (grid t*h*w / merge_size**2),
    `attention_mask`, `pixel_values` `[num_patches, 3*temporal_patch*patch*patch]`, `image_grid_thw`
    `[num_images, 3]` and `mm_token_type_ids` (1 at image tokens), which the model needs to build mRoPE ids.
    """

    # The parameter names of __init__ are what ProcessorMixin saves and loads: leaving out `video_processor`
    # is what makes these classes load a stock checkpoint's image processor and tokenizer and nothing else.
    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None, **kwargs: Any
    ):
        ids = tokenizer.convert_tokens_to_ids
        self.image_token = getattr(tokenizer, "image_token", None) or IMAGE_TOKEN
        self.video_token = getattr(tokenizer, "video_token", None) or VIDEO_TOKEN
        self.vision_start_token = getattr(tokenizer, "vision_start_token", None) or VISION_START_TOKEN
        self.vision_end_token = getattr(tokenizer, "vision_end_token", None) or VISION_END_TOKEN
        self.image_token_id, self.video_token_id = ids(self.image_token), ids(self.video_token)
        self.vision_start_token_id, self.vision_end_token_id = ids(self.vision_start_token), ids(self.vision_end_token)
        # Skip the stock __init__: it passes a third (video) sub-processor to ProcessorMixin.
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> Any:
        """Save as the stock processor does, naming the stock class so that stock loaders recognise the folder.

        Beside transformers 5's `processor_config.json`, the image processor is also written to the legacy
        `preprocessor_config.json`, as Qwen's own checkpoints ship it: a stock processor's video processor reads its
        settings from there when the folder has no video processor config of its own, and this one has none.
        """
        out = super().save_pretrained(save_directory, *args, **kwargs)
        folder, name = Path(save_directory), stock_processor_name(type(self))
        write_image_processor_file(folder, self, name)
        name_stock_processor(folder, name)
        return out

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs: Any) -> str:
        """Videos are not supported: say so instead of failing on a missing video processor."""
        raise ValueError(f"bbu-vl's {type(self).__name__} handles images only; videos are not supported")


class Qwen2_5_VLImageOnlyProcessor(ImageOnlyMixin, Qwen2_5_VLProcessor):
    """`Qwen2_5_VLProcessor` without the video processor (Qwen2.5-VL)."""


class Qwen3VLImageOnlyProcessor(ImageOnlyMixin, Qwen3VLProcessor):
    """`Qwen3VLProcessor` without the video processor (Qwen3-VL and Qwen3.5)."""


# A family's stock processor class name (data/families.py) -> its image-only stand-in.
IMAGE_ONLY_PROCESSORS: dict[str, type[ProcessorMixin]] = {
    "Qwen2_5_VLProcessor": Qwen2_5_VLImageOnlyProcessor,
    "Qwen3VLProcessor": Qwen3VLImageOnlyProcessor,
}


# Files in which transformers records the processor class a folder was saved with.
PROCESSOR_CLASS_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


def stock_processor_name(cls: type) -> str:
    """The stock class name an image-only stand-in saves itself as (`Qwen2_5_VLProcessor`, `Qwen3VLProcessor`)."""
    return next(name for name, stand_in in IMAGE_ONLY_PROCESSORS.items() if issubclass(cls, stand_in))


def name_stock_processor(folder: Path, name: str) -> None:
    """Rewrite `processor_class` to `name` in a saved folder's processor files that record one."""
    for file in PROCESSOR_CLASS_FILES:
        path = folder / file
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "processor_class" in data and data["processor_class"] != name:
            data["processor_class"] = name
            write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def image_only_processor_class(model_type: str) -> type[ProcessorMixin]:
    """The image-only processor class for a `config.json` `model_type` (ValueError listing the supported ones)."""
    return IMAGE_ONLY_PROCESSORS[get_family(model_type).processor_class]


def set_pixel_range(processor: Any, frame: CoordinateContract) -> None:
    """Set the image processor's smart_resize pixel bounds to the coordinate contract's, in place.

    transformers 5 stores them as `size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}`; old
    `min_pixels`/`max_pixels` attributes, where a processor still has them, are kept in step.
    """
    image_processor = processor.image_processor
    size = _size_dict(image_processor.size)
    size["shortest_edge"], size["longest_edge"] = frame.min_pixels, frame.max_pixels
    image_processor.size = SizeDict(**size) if isinstance(image_processor.size, SizeDict) else size
    for name, key in (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge")):
        if getattr(image_processor, name, None) is not None:
            setattr(image_processor, name, size[key])


def pixel_range(processor: Any) -> tuple[int, int]:
    """`(min_pixels, max_pixels)` the image processor resizes to."""
    size = _size_dict(processor.image_processor.size)
    return int(size["shortest_edge"]), int(size["longest_edge"])


def write_image_processor_file(folder: Path, processor: Any, name: str) -> None:
    """The image processor's settings as preprocessor_config.json, naming the processor class `name`."""
    legacy = {**processor.image_processor.to_dict(), "processor_class": name}
    write_text_atomic(folder / IMAGE_PROCESSOR_FILE, json.dumps(legacy, ensure_ascii=False, indent=2) + "\n")


def save_processor(processor: Any, folder: Path) -> None:
    """Save a checkpoint's processor so that the folder has preprocessor_config.json whichever processor class was
    loaded: a stock one (where torchvision imports) nests it in processor_config.json only, and a checkpoint trained
    on one machine must read the same on another (docs/families.md, "Processor files"). ValueError naming the folder
    where the tokenizers library cannot write tokenizer.json (data/input_paths.py, `model_files_path_problem`)."""
    if (problem := model_files_path_problem(folder)) is not None:
        raise ValueError(f"{folder}: the processor cannot be saved: {problem}")
    processor.save_pretrained(folder)
    if not (Path(folder) / IMAGE_PROCESSOR_FILE).is_file():
        write_image_processor_file(Path(folder), processor, type(processor).__name__)


def saved_pixel_range(folder: Path) -> tuple[int, int] | None:
    """`(min_pixels, max_pixels)` a model folder's saved image processor resizes to (its `size`, else the keys readers
    before transformers' `size` take); None when it names neither. ValueError naming the file when it is no JSON."""
    data = saved_image_processor(folder)
    if data is None:
        return None
    size = data.get("size")
    size = size if isinstance(size, dict) else {}
    lo = size.get("shortest_edge", data.get("min_pixels"))
    hi = size.get("longest_edge", data.get("max_pixels"))
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (lo, hi))
    return (lo, hi) if ok else None


def _size_dict(size: dict | SizeDict) -> dict[str, int]:
    # dict(SizeDict) yields only the fields that are set, in transformers 5.17 and 5.23 alike.
    return {k: v for k, v in dict(size).items() if v is not None}


# Looked up by model_type so that a transformers without one of the families still imports this module.
for _model_type in FAMILIES:
    if _model_type in CONFIG_MAPPING:
        AutoProcessor.register(CONFIG_MAPPING[_model_type], image_only_processor_class(_model_type), exist_ok=True)
