"""The one way bbu-vl loads a vision-language checkpoint (a tiny test model or a real Qwen VL) and its processor.

Everything goes through `AutoModelForImageTextToText` and `AutoProcessor`, from a local folder or a hub id, so
the tiny model in the tests exercises exactly the code a real checkpoint does. After loading, the special-token
ids the model was built with are checked against the tokenizer's: a mismatch would make the model look for
images at the wrong tokens, which fails far from the cause or, worse, silently. A checkpoint's family
(data/families.py) is read from its `config.json` `model_type`, never from its folder name.
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel

from bbuvl.data.coords import CONTRACT_FILE, CoordinateContract
from bbuvl.data.jsonfile import read_json
from bbuvl.data.families import TURN_START, VISION_SPECIAL_TOKENS, check_hub_reachable, family_of
from bbuvl.data.input_paths import model_files_path_problem
from bbuvl.model.checkpoint import TOKENIZER_FILES, CheckpointError
from bbuvl.model.checkpoint_files import IMAGE_PROCESSOR_FILE, PROCESSOR_CONFIG_FILE
from bbuvl.model.patch_projection import use_linear_patch_projection
from bbuvl.model.window_attention import use_batched_window_attention
from bbuvl.model.processor import (IMAGE_ONLY_PROCESSORS, PROCESSOR_CLASS_FILES, image_only_processor_class,
                                   set_pixel_range)
from bbuvl.paths import check_model_source

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Config attribute -> the token it must name in the tokenizer.
VISION_TOKENS = VISION_SPECIAL_TOKENS


class SpecialTokenMismatch(ValueError):
    """The model's config and the tokenizer disagree on a special token's id."""


def load_processor(path: str, frame: CoordinateContract | None = None) -> Any:
    """Load the processor (image processor + tokenizer + chat template) of a checkpoint folder or hub id."""
    check_hub_reachable(path)
    check_tokenizer_files(path)
    with _hub_id_named(path, "processor"), _config_named(path):
        processor = _auto_processor(path)
    if frame is not None:
        set_pixel_range(processor, frame)
    return processor


def check_tokenizer_files(path: str) -> None:
    """CheckpointError naming a local folder that holds no tokenizer vocabulary in any form HF saves one."""
    # Without one, transformers builds a tokenizer of the special tokens alone, and the first error was the special
    # tokens' check ("model config and tokenizer disagree") for a plain model folder in predict, serve and doctor.
    folder = Path(path)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(f"{folder}: no tokenizer ({' or '.join(TOKENIZER_FILES)} missing); re-copy the model "
                              "folder with its tokenizer files")


def check_folder_path(path: str) -> None:
    """CheckpointError naming a local model folder whose weights safetensors cannot open by its path
    (data/input_paths.py, `model_files_path_problem`): one named in GBK bytes, or in Chinese in a zh_CN.GBK locale,
    failed to load its weights, and the intact tokenizer.json was blamed ("restore the checkpoint's own
    tokenizer.json"). Its processor alone reads (transformers reads tokenizer.json itself)."""
    if Path(path).is_dir() and (problem := model_files_path_problem(path)) is not None:
        raise CheckpointError(f"{path}: its files cannot be read: {problem}")


@contextmanager
def _hub_id_named(path: str, what: str) -> Iterator[None]:
    """An OSError loading from a hub id (no local folder of that name) names the id: the hub library's own message
    ("We couldn't connect to 'https://huggingface.co' ...") says neither which model nor that it was no folder."""
    try:
        yield
    except OSError as e:
        if Path(path).exists():
            raise
        first = (str(e).splitlines() or [""])[0][:300]
        raise OSError(f"{path}: no local folder of that name, and its {what} could not be loaded as a Hugging Face "
                      f"hub id ({first}); give a local model folder") from None


def _auto_processor(path: str) -> Any:
    """AutoProcessor's answer, or the family's image-only processor where AutoProcessor cannot give a full one here."""
    if _stock_processor_needs_torchvision(path):
        # AutoProcessor would read the tokenizer and the image processor, then fail on the video processor, and both
        # be read again below: about half the time of every load of a checkpoint on a machine without torchvision
        return _image_only_class(path).from_pretrained(path)
    try:
        processor = AutoProcessor.from_pretrained(path)
    except (ImportError, ValueError, OSError) as e:
        # A stock checkpoint names its stock processor, whose video processor needs torchvision (ImportError from
        # Qwen2_5_VLProcessor, ValueError from the video-processor lookup of Qwen3VLProcessor), and settings of its
        # own: a folder whose image processor is nested in processor_config.json, with no preprocessor_config.json
        # to fall back on, has none (OSError "Can't load video processor"). Images are all bbu-vl feeds the model.
        said = str(e).lower()
        if "torchvision" not in said and "video processor" not in said:
            raise
        return _image_only_class(path).from_pretrained(path)
    if hasattr(processor, "image_processor") and hasattr(processor, "tokenizer"):
        return processor
    # transformers 5.17 ignores AutoProcessor.register for a built-in config class, cannot resolve our class
    # name from processor_config.json, and silently returns the bare tokenizer.
    cls = _image_only_class(path)
    try:
        return cls.from_pretrained(path)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(
            f"{path}: AutoProcessor found only a {type(processor).__name__}, not an image+text processor, and the "
            f"{cls.__name__} image processor could not be read either ({e}); the checkpoint needs "
            "preprocessor_config.json or processor_config.json next to its tokenizer files"
        ) from e


def _stock_processor_needs_torchvision(path: str) -> bool:
    """Whether the folder `path` names a family's stock processor (model/processor.py) in the first of its processor
    files that names one, as AutoProcessor reads them, and torchvision, which that processor's video processor needs,
    is not installed here (it never is with bbu-vl's CPU torch): AutoProcessor then fails on the video processor."""
    folder = Path(path)
    if not folder.is_dir() or importlib.util.find_spec("torchvision") is not None:
        return False
    for name in PROCESSOR_CLASS_FILES:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError):  # unreadable: AutoProcessor says what is wrong with it, as before
            return False
        if isinstance(data, dict) and "processor_class" in data:
            return data["processor_class"] in IMAGE_ONLY_PROCESSORS
    return False


def _image_only_class(path: str) -> type:
    """The image-only processor for the checkpoint's family (data/families.py).

    A LoRA adapter folder holds the processor but no `config.json`: there the processor class the folder was
    saved with says which family it is.
    """
    folder = Path(path)
    if folder.is_dir() and not (folder / "config.json").is_file():
        saved = _saved_processor_class(folder)
        if saved is None:
            raise ValueError(f"{path}: no config.json to read the model family from, and no bbu-vl processor "
                             "saved there either; point at the base checkpoint folder")
        return saved
    return image_only_processor_class(family_of(path).model_type)


def _saved_processor_class(folder: Path) -> type | None:
    """The image-only processor class named in a folder's processor files, if any."""
    by_name = {cls.__name__: cls for cls in IMAGE_ONLY_PROCESSORS.values()} | IMAGE_ONLY_PROCESSORS
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        file = folder / name
        if file.is_file():
            data = read_json(file)
            saved = data.get("processor_class") if isinstance(data, dict) else None
            if saved in by_name:
                return by_name[saved]
    return None


def load_model_and_processor(
    path: str,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
    frame: CoordinateContract | None = None,
    device: str | None = None,
    load_in_bits: int = 16,
    processor_path: str | None = None,
) -> tuple[PreTrainedModel, Any]:
    """Load model (in eval mode, on `device` when given) and processor, and check their special tokens agree.

    `frame` sets the image processor's smart_resize bounds; it is the run config's or the checkpoint's coordinate
    contract, so boxes are predicted in the frame they were trained in.
    `load_in_bits` 4 or 8 quantises the language model with bitsandbytes (QLoRA); the vision tower stays in `dtype`.
    `processor_path` (default `path`): where the processor is, when not beside the weights (a LoRA checkpoint's).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    if attn_implementation == "flash_attention_2":
        check_flash_attention()
    check_model_source(str(path))
    for folder in dict.fromkeys((path, processor_path or path)):  # a LoRA checkpoint's adapters and head are weights too
        check_folder_path(folder)
    if frame is not None and processor_path is not None:  # a checkpoint's contract (train checks its config's)
        check_frame_family(path, frame, processor_path)
    processor = load_processor(processor_path or path, frame)
    local_vision = _local_vision_config(path)
    if local_vision is not None:  # before minutes of loading
        check_vision_grid(local_vision, processor, path, processor_path or path)
    kwargs: dict[str, Any] = {}
    if load_in_bits != 16:
        kwargs["quantization_config"] = quantization_config(load_in_bits, DTYPES[dtype])
        kwargs["device_map"] = {"": device or "cuda"}
    generation = greedy_generation(path)
    if generation is not None:
        kwargs["generation_config"] = generation
    with _hub_id_named(path, "weights"):
        model = load_weights(AutoModelForImageTextToText, path, dtype=DTYPES[dtype],
                             attn_implementation=attn_implementation, **kwargs)
    check_special_tokens(model.config, processor, source=path)
    if local_vision is None and getattr(model.config, "vision_config", None) is not None:  # a hub id's, read with it
        check_vision_grid(model.config.vision_config.to_dict(), processor, path, processor_path or path)
    use_linear_patch_projection(model)  # the same numbers, a fraction of the convolution's time
    use_batched_window_attention(model)  # one SDPA call per window size, not per window (model/window_attention.py)
    if device is not None:
        model = model.to(device)
    return model.eval(), processor


def greedy_generation(path: str) -> Any:
    """`path`'s generation_config.json as a GenerationConfig without the sampling flags beside `do_sample` false (and
    the beam flags beside one beam), which greedy decoding ignores; None when it holds none (transformers reads it)."""
    from transformers import GenerationConfig

    from bbuvl.model.export import BEAM_ONLY, SAMPLING_ONLY

    file = Path(path) / "generation_config.json"
    if not file.is_file():
        return None
    try:
        saved = read_json(file)
    except ValueError:
        return None  # transformers' own error, named by _config_named
    if not isinstance(saved, dict):
        return None
    # An export written before `model export` left them out says `"do_sample": false` beside `"temperature": 0`
    # (vLLM's greedy), and transformers warned "generation flags are not valid" at every load of it; bbuvl decodes
    # greedily (or passes its own sampling flags), so dropping them changes no answer (docs/serving.md, "Greedy in vLLM").
    ignored = [name for name in SAMPLING_ONLY if not saved.get("do_sample") and saved.get(name) is not None]
    ignored += [name for name in BEAM_ONLY if saved.get("num_beams") in (None, 1) and saved.get(name) is not None]
    if not ignored:
        return None
    try:
        return GenerationConfig.from_dict({k: v for k, v in saved.items() if k not in ignored})
    except Exception:  # a value of another type: transformers' own read names the file (hf_file_problem)
        return None


def check_frame_family(path: str, frame: CoordinateContract, contract_folder: str) -> None:
    """ValueError when a local model folder's family (config.json) is not the family of the checkpoint's contract."""
    # A checkpoint's coordinate_contract.json of another family (copied from another run) loaded silently: its boxes
    # were read in that family's frame and convention, its prompt written as that family's (docs/families.md).
    if not Path(path).is_dir():
        return
    family = family_of(path)
    if frame.family == family.model_type:
        return
    # `contract_folder` is the checkpoint, `path` where its weights load from: the same folder, or a LoRA one's base.
    raise ValueError(f"{Path(contract_folder) / CONTRACT_FILE}: family '{frame.family}' ({frame.box_format} boxes, "
                     f"{frame.factor}-pixel cells), but {Path(path) / 'config.json'} is a {family.name} model "
                     f"('{family.model_type}', {family.box_format} boxes, {family.factor}-pixel cells): it would be "
                     "prompted, and its boxes "
                     "read, as the other family's; restore the checkpoint's own contract or give the model it was "
                     "trained from")


def load_weights(model_class: Any, path: str, **kwargs: Any) -> PreTrainedModel:
    """`model_class.from_pretrained(path, **kwargs)`, refused naming the folder or its config.json when the weights
    do not fit the model config.json builds, or transformers cannot build that model at all, or its path is one the
    weights cannot be opened by (`check_folder_path`)."""
    check_folder_path(path)
    if (problem := size_problem(Path(path))) is not None:  # before the model is built at the config's size
        raise WeightsMismatch(problem)
    with _config_named(path), _weights_named(path):
        model, info = model_class.from_pretrained(path, output_loading_info=True, **kwargs)
    check_weights_fit(info, path)
    return model


class WeightsMismatch(ValueError):
    """A folder's weight files do not fit the model its config.json builds."""


WEIGHT_FILES = ("model*.safetensors", "pytorch_model*.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")


@contextmanager
def _weights_named(path: str) -> Iterator[None]:
    """HF's errors for weights that are absent or of another shape, said as the folder's problem in one line."""
    try:
        yield
    except OSError:
        folder = Path(path)
        if not folder.is_dir() or any(any(folder.glob(pattern)) for pattern in WEIGHT_FILES):
            raise
        raise WeightsMismatch(f"{path}: no model weights in this folder (model.safetensors, or its shards and "
                              "model.safetensors.index.json): a copy cut short or a folder of another kind; "
                              "re-copy the checkpoint, or point at a model folder") from None
    except RuntimeError as e:
        if "mismatched_sizes" not in str(e) and "size mismatch" not in str(e):
            raise
        raise WeightsMismatch(f"{path}: a weight in its model*.safetensors has another shape than its config.json "
                              "builds (HF's loading report above names it): the weights and config.json come from "
                              "different models (or config.json was edited); re-copy the checkpoint or use "
                              "another") from None


@contextmanager
def _config_named(path: str) -> Iterator[None]:
    """An error from transformers that the folder's config.json causes (a hand edit: a size, a rope type, a field of
    another type) names that file, where it was a traceback from deep inside the model's constructor."""
    try:
        yield
    except (OSError, WeightsMismatch, SpecialTokenMismatch):
        raise
    except Exception as e:
        config = Path(path) / "config.json"
        problem = config_problem(Path(path)) if config.is_file() else None
        if problem is not None:
            raise ValueError(f"{config}: transformers cannot build the model it describes ({problem}); restore the "
                             "checkpoint's own config.json, or re-copy the checkpoint") from e
        file, problem = hf_file_problem(Path(path)) if Path(path).is_dir() else (None, None)
        if file is None:
            raise
        raise ValueError(f"{file}: transformers cannot read it ({problem}); restore the checkpoint's own "
                         f"{file.name}, or re-copy the checkpoint") from e


def hf_file_problem(folder: Path) -> tuple[Path | None, str | None]:
    """The file of `folder` transformers fails on besides config.json, and why: tokenizer.json (a hand edit or a
    file of another tool was a KeyError from inside the tokenizer) or generation_config.json (a value of another
    type, a TypeError from its validation); (None, None) when both read."""
    import tokenizers
    from transformers import GenerationConfig

    # From its text, not its path: the library opens paths by their UTF-8 bytes, and blamed the file for its folder's name
    reads = (("tokenizer.json", lambda f: tokenizers.Tokenizer.from_str(f.read_text(encoding="utf-8"))),
             ("generation_config.json", lambda f: GenerationConfig.from_dict(read_json(f))))
    for name, read in reads:
        file = folder / name
        if not file.is_file():
            continue
        try:
            read(file)
        except Exception as e:  # whatever the reader raises on a bad value: KeyError, TypeError, ValueError, its own
            text = " ".join(str(e).split())
            return file, (f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__)
    return None, None


def config_problem(folder: Path) -> str | None:
    """Why transformers cannot build a model from `folder`'s config.json, or None when it can.

    Built on the meta device: no memory, so what fails there is the config's own doing, not the machine's.
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(folder))
        with torch.device("meta"):
            AutoModelForImageTextToText.from_config(config)
    except Exception as e:  # whatever a constructor raises on a bad value: ValueError, KeyError, RuntimeError...
        text = " ".join(str(e).split())
        return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__
    return None


# How many times the weights' parameters a config.json may build before it is refused unbuilt: a 7B's config beside
# a 3B's weights builds 2.2 times them; a config a little off is left to the loading report, which names each weight.
SIZE_MARGIN = 2


def size_problem(folder: Path) -> str | None:
    """Why `folder`'s config.json cannot be the model its safetensors weights hold, told before anything is built: it
    builds more than SIZE_MARGIN times the parameters the files hold (counted on the meta device and from the files'
    headers); None when not, or when there is nothing local to count.

    transformers builds the whole model config.json describes before it finds the weights do not fit it: a config of
    another size copied in (a minimal one, `{"model_type": "qwen2_5_vl"}`, builds Qwen's default, 75.8 billion
    parameters) was killed by the kernel for want of memory, without a word, where the weights held a million.
    """
    from transformers import AutoConfig

    # The VLM's files alone: a checkpoint's detection head and other modules are files of their own beside them
    config_file, files = folder / "config.json", sorted(folder.glob("model*.safetensors"))
    if not config_file.is_file() or not files:
        return None
    try:
        held = sum(_stored_elements(f) for f in files)
        config = AutoConfig.from_pretrained(str(folder))
        with torch.device("meta"):
            built = sum(p.numel() for p in AutoModelForImageTextToText.from_config(config).parameters())
    except Exception:  # a damaged file or a config transformers cannot build: named where it is read
        return None
    if built <= SIZE_MARGIN * held:  # a config a little off is named weight by weight once loaded (check_weights_fit)
        return None
    return (f"{config_file}: builds a model of {built:,} parameters, but its weight files hold {held:,}: config.json "
            "is another model's (another size, or edited); restore the checkpoint's own config.json, or re-copy the "
            "checkpoint")


def _stored_elements(file: Path) -> int:
    """The numbers a safetensors file holds, read from its header alone."""
    with file.open("rb") as fh:
        header = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def check_weights_fit(info: dict[str, list], path: str) -> None:
    """Raise WeightsMismatch when the loaded weights left parts of the model at random or went unused.

    HF only logs missing and unexpected weights: a config.json edited to another family or size would otherwise
    train or answer with randomly initialised layers, and never say so.
    """
    missing, unexpected = list(info.get("missing_keys", [])), list(info.get("unexpected_keys", []))
    mismatched = [str(key[0] if isinstance(key, tuple) else key) for key in info.get("mismatched_keys", [])]
    problems = [f"{len(names)} {what} ({', '.join(sorted(names)[:3])}{', ...' if len(names) > 3 else ''})"
                for what, names in (("weights its config.json builds are not in its weight files", missing),
                                    ("weights in its weight files are not in the model its config.json builds",
                                     unexpected),
                                    ("weights of another shape than its config.json builds", mismatched)) if names]
    if problems:
        raise WeightsMismatch(f"{path}: the weights do not fit config.json: " + "; ".join(problems) +
                              ". They come from different models, or config.json was edited (model_type, sizes); "
                              "re-copy the checkpoint or restore its config.json")


def flash_attention_problem() -> str | None:
    """Why FlashAttention 2 cannot run on this machine (no CUDA GPU, or no flash-attn package); None when it can."""
    import importlib.util

    if importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available():
        return ("model.attn_implementation flash_attention_2 needs a CUDA GPU and the flash-attn package "
                "(`pip install flash-attn`); use sdpa (the same attention, in PyTorch) on this machine")
    return None


def check_flash_attention() -> None:
    """ValueError, before the weights load, when FlashAttention 2 cannot run here: transformers raised an ImportError
    from inside the model's constructor, a traceback that named no setting."""
    if (problem := flash_attention_problem()) is not None:
        raise ValueError(problem)


def quantization_problem(bits: int) -> str | None:
    """Why `bits`-bit loading (QLoRA, 4 or 8) cannot run on this machine (no CUDA GPU, or no bitsandbytes); None
    when it can."""
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available():
        return (f"{bits}-bit loading (QLoRA) needs a CUDA GPU and `pip install bitsandbytes`; "
                "use model.lora.bits=16 (plain LoRA) on this machine")
    return None


def quantization_config(bits: int, compute_dtype: torch.dtype) -> Any:
    """A bitsandbytes config for QLoRA (4-bit NF4 with double quantisation, or 8-bit); needs CUDA and bitsandbytes."""
    if bits not in (4, 8):
        raise ValueError(f"load_in_bits must be 4, 8 or 16, got {bits}")
    if (problem := quantization_problem(bits)) is not None:
        raise ValueError(problem)
    from transformers import BitsAndBytesConfig

    if bits == 4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype,
                                  llm_int8_skip_modules=["visual", "lm_head"])
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["visual", "lm_head"])


def special_token_ids(processor: Any) -> dict[str, int]:
    """Ids the tokenizer gives the vision and chat special tokens, keyed like the model config's attributes."""
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in VISION_TOKENS.items()}
    ids["im_start_token_id"] = tokenizer.convert_tokens_to_ids(TURN_START)
    ids["eos_token_id"] = tokenizer.eos_token_id
    ids["pad_token_id"] = tokenizer.pad_token_id
    return ids


# The image processor's setting -> the vision tower's (config.json `vision_config`) it must equal.
GRID_KEYS = {"patch_size": "patch_size", "merge_size": "spatial_merge_size", "temporal_patch_size": "temporal_patch_size"}


class VisionGridMismatch(ValueError):
    """The image processor cuts photos into patches of another size than the model's vision tower takes."""


def _local_vision_config(path: str) -> dict[str, Any] | None:
    """A local model folder's `vision_config` from its config.json, None when there is none to read (a hub id; a
    damaged file is named where it is read)."""
    file = Path(path) / "config.json"
    try:
        vision = read_json(file).get("vision_config") if file.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return vision if isinstance(vision, dict) else None


def check_vision_grid(vision: dict[str, Any], processor: Any, path: str, processor_path: str) -> None:
    """VisionGridMismatch naming both files when the image processor's patch, merge or temporal patch size is not the
    vision tower's (`vision`: its config as a dict).

    A processor file of another model (a Qwen3-VL's, 16-pixel patches, beside a Qwen2.5-VL, 14) loaded, and every
    photo then failed alone, as "RuntimeError: shape '[-1, 3, 2, 14, 14]' is invalid for input of size 258048",
    naming no file; a merge size of another model's gave each photo another count of image tokens than features."""
    image_processor = getattr(processor, "image_processor", None)
    problems = [f"{ours} {getattr(image_processor, ours)} where its vision_config has {theirs} {vision[theirs]}"
                for ours, theirs in GRID_KEYS.items()
                if getattr(image_processor, ours, None) is not None and vision.get(theirs) is not None
                and getattr(image_processor, ours) != vision[theirs]]
    if not problems:
        return
    folder = Path(processor_path)
    saved = next((folder / name for name in (IMAGE_PROCESSOR_FILE, PROCESSOR_CONFIG_FILE) if (folder / name).is_file()),
                 folder)
    raise VisionGridMismatch(f"{saved}: the image processor has {'; '.join(problems)} ({Path(path) / 'config.json'}): "
                             "it cuts photos into patches the model does not take, so every photo would fail; the file "
                             "is another model's: restore this model's own")


def check_special_tokens(config: Any, processor: Any, source: str = "model") -> None:
    """Raise SpecialTokenMismatch, naming both ids, when the config's special tokens are not the tokenizer's."""
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = special_token_ids(tokenizer)
    problems = []
    for name, token in VISION_TOKENS.items():
        config_id = getattr(config, name, None)
        if config_id is not None and config_id != ids[name]:
            problems.append(f"config {name}={config_id} but the tokenizer has {token}={ids[name]}")
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    config_eos = getattr(text_config, "eos_token_id", None)
    config_eos = config_eos if isinstance(config_eos, list) else [config_eos] if config_eos is not None else []
    if config_eos and ids["eos_token_id"] not in config_eos:
        problems.append(
            f"config eos_token_id={config_eos} but the tokenizer's eos {tokenizer.eos_token}={ids['eos_token_id']}"
        )
    vocab_size = getattr(text_config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        problems.append(f"the tokenizer has {len(tokenizer)} tokens but the model embeds only {vocab_size}")
    if problems:
        raise SpecialTokenMismatch(f"{source}: model config and tokenizer disagree: " + "; ".join(problems))
