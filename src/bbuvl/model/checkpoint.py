"""Checkpoint folders: the VLM (`save_pretrained`, safetensors), the detection head, the processor, the run
config, the coordinate contract and the prompt — everything inference needs to reproduce training exactly.

    ckpt/
      config.json, model.safetensors      the VLM (or adapter_config.json + adapter_model.safetensors with LoRA)
      detection_head.safetensors          when the run has a head
      vision_positions.safetensors        when the run adds absolute positions to the vision tokens
      coordinate_readout.safetensors      when the run trains with loss.coordinate_regression (for --resume)
      preprocessor_config.json, tokenizer files, chat_template
      bbuvl.yaml                          the run config used
      coordinate_contract.json            min/max pixels of the model frame
      training_scale.json                 frame pixels per photo pixel the run trained at (tiles: auto)
      prompt.json                         system prompt, label vocabulary, language
      verdict_thresholds.json             the photo verdict's thresholds, once `bbuvl eval --choose-thresholds` chose them
      verdict_thresholds_tiled.json       ... for photos predicted through tiles or zoom, chosen on such photos
      tile_scale.json                     the scale tiles: auto shows photos at, once `bbuvl choose-tiles` chose it
      lora_base.json                      with LoRA: a fingerprint of the base the adapters trained on (model/lora_base.py)
      content_digest.json                 SHA-256 of every file above, for resumes (model/identity.py)

Every file is checked when the folder is read, each error naming the file (model/checkpoint_files.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bbuvl.atomic import (atomic_folder, atomic_path, readable_as_opened, remove_dead_writers_temporaries, remove_path,
                          replace_folder, set_aside_by_dead_writers, write_text_atomic)
from bbuvl.config import CONFIG_FILE, Config, absent_keys, dump_config, not_a_checkpoint, read_run_config
from bbuvl.data.coords import CONTRACT_FILE, EXPORT_FRAME_FILE, CoordinateContract, export_frame
from bbuvl.data.families import family_of, get_family
from bbuvl.data.jsonfile import read_json
from bbuvl.data.scale import TrainingScale
from bbuvl.data.text import shell_word
from bbuvl.model.checkpoint_files import (IMAGE_PROCESSOR_FILE, PROCESSOR_CONFIG_FILE, TEMPLATE_FILE, check_module_state,
                                          check_prompt, json_problem, saved_image_processor, template_problem)
from bbuvl.model.identity import (CHOSEN_LATER, DIGEST_FILE, record_digests, recorded_digests, restamp_chosen,
                                  taken_choices, write_taken)
from bbuvl.model.lora_base import BASE_FILE, base_changes, record_base
from bbuvl.outputs import writer_around
from bbuvl.paths import real_path

log = logging.getLogger(__name__)

HEAD_FILE = "detection_head.safetensors"
POSITIONS_FILE = "vision_positions.safetensors"
READOUT_FILE = "coordinate_readout.safetensors"
PROMPT_FILE = "prompt.json"


class CheckpointError(ValueError):
    """A checkpoint folder that is incomplete or damaged (a save killed half-way, a truncated copy)."""


class OlderCheckpointError(CheckpointError):
    """A module file of a whole checkpoint that an older bbu-vl wrote, in a layout this version no longer builds:
    `cause` says so, naming the file and the keys its bbuvl.yaml lacks, `advice` what to do; `module` is the file's
    name."""

    def __init__(self, module: str, cause: str,
                 advice: str = "not loadable by this version: retrain, or use the bbu-vl that wrote it"):
        super().__init__(f"{cause}; {advice}")
        self.module, self.cause = module, cause


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
        """Read prompt.json; CheckpointError naming the file when it is not an object of exactly its three keys."""
        path = Path(directory) / PROMPT_FILE
        try:
            return cls(**check_prompt(read_json(path, "prompt file"), path))
        except ValueError as e:
            raise CheckpointError(str(e)) from None


def is_peft(model: torch.nn.Module) -> bool:
    """True for a peft-wrapped VLM."""
    return hasattr(model, "peft_config")


def extra_modules(model: Any) -> list[tuple[Any, str, str]]:
    """A `BBUVLModel`'s modules saved beside the VLM: (module or None, its file, the config key that builds it)."""
    return [(model.detection_head, HEAD_FILE, "detection.enabled"),
            (model.vision_positions, POSITIONS_FILE, "model.vision_positions"),
            (model.coordinate_readout, READOUT_FILE, "loss.coordinate_regression")]


def save_checkpoint(model: Any, processor: Any, cfg: Config, contract: CoordinateContract, prompt: Prompt,
                    directory: str | Path, scale: TrainingScale | None = None) -> Path:
    """Write a complete checkpoint folder for a `BBUVLModel` (with the scale it trained at, when known)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.vlm.save_pretrained(directory, safe_serialization=True)
    save_stock_generation(model.vlm, processor, cfg, directory)
    for module, name, _ in extra_modules(model):
        if module is not None:
            state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
            with atomic_path(directory / name) as tmp:
                save_file(state, tmp, metadata={"format": "pt"})
    from bbuvl.model.processor import save_processor

    save_processor(processor, directory)
    write_text_atomic(directory / CONFIG_FILE, dump_config(cfg))
    contract.save(directory)
    if scale is not None:
        scale.save(directory)
    prompt.save(directory)
    if is_peft(model.vlm) and Path(cfg.model.path).is_dir():
        record_base(directory, cfg.model.path)
    for file in directory.glob("*.safetensors"):  # save_pretrained's weights, created 0600 by safetensors 0.8
        readable_as_opened(file)
    record_digests(directory)  # last: what a resume compares this checkpoint by (model/identity.py)
    return directory


def save_stock_generation(vlm: Any, processor: Any, cfg: Config, directory: Path) -> None:
    """Write the checkpoint's generation_config.json as `bbuvl model export` writes it (greedy, stopping where `bbuvl
    predict` stops, with its `inference.max_new_tokens`). save_pretrained wrote the base's own, and stock transformers
    loading the checkpoint stopped at the default 20 tokens of `max_length` with the base's sampling flags; bbu-vl
    passes all of these at every call, so its own answers are the same. A LoRA checkpoint's adapters write none."""
    import copy

    from bbuvl.model.export import GENERATION_FILE, as_predict_decodes

    file = directory / GENERATION_FILE
    generation = getattr(vlm, "generation_config", None)
    if generation is None or not file.is_file():
        return
    generation = copy.deepcopy(generation)  # the model training goes on with keeps its own
    as_predict_decodes(generation, processor.tokenizer, cfg.inference.max_new_tokens)
    try:
        generation.validate(strict=True)
    except ValueError as e:  # the base's file holds a value transformers refuses: kept as save_pretrained wrote it
        log.warning("%s: kept as the base model's (%s)", file, " ".join(str(e).split()))
        return
    with atomic_path(file) as tmp:
        generation.to_json_file(tmp)


def safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file cannot be read (its header damaged, or the file shorter or longer than the header says),
    in words without its path; None when it can."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        try:
            header = json.loads(fh.read(n)) if 0 < n <= size - 8 else None
        except ValueError:
            header = None
    if not isinstance(header, dict):
        return "damaged safetensors header (a copy or save cut short?)"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if size != 8 + n + end:
        return f"{size} bytes, its header says {8 + n + end} (a copy or save cut short?)"
    return None


def verify_safetensors(path: Path) -> None:
    """Raise CheckpointError when a safetensors file is shorter or longer than its own header says (cut short, damaged)."""
    if (problem := safetensors_problem(path)) is not None:
        raise CheckpointError(f"{path}: {problem}; re-copy it or use another checkpoint")


TRAINING_FILES = (CONFIG_FILE, CONTRACT_FILE, PROMPT_FILE)  # what `bbuvl train` adds to a model folder
# A tokenizer's vocabulary in one of the forms HF saves it: without one, loading fails with a message about the
# config and tokenizer disagreeing, far from the missing file.
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # a LoRA checkpoint's VLM, over its base


def _has_training_files(directory: Path) -> bool:
    return any((directory / f).exists() for f in TRAINING_FILES)


def is_plain_model_folder(directory: str | Path) -> bool:
    """A model folder (config.json) holding none of the files `bbuvl train` writes: a base model, never trained here.

    A folder with some of them is a damaged checkpoint, and one without config.json no model at all.
    """
    directory = Path(directory)
    return (directory / "config.json").is_file() and not _has_training_files(directory)


def missing_model_files(directory: Path) -> list[str]:
    """The files transformers loads a checkpoint from that are not in it: without them its errors name other things
    ("Unrecognized model", "Can't load video processor", "config and tokenizer disagree")."""
    # An adapter checkpoint by either of its two files: one whose weights were lost was told "config.json missing",
    # a file it never had.
    adapter = [name for name in ADAPTER_FILES if (directory / name).is_file()]
    try:
        has_image_processor = saved_image_processor(directory) is not None
    except ValueError:
        has_image_processor = True  # there, but damaged: json_problem names the file
    missing = ([name for name in ADAPTER_FILES if name not in adapter] if adapter else
               [] if (directory / "config.json").is_file() else ["config.json"])
    if not has_image_processor:
        missing.append(f"{IMAGE_PROCESSOR_FILE} (or an image_processor in {PROCESSOR_CONFIG_FILE})")
    return missing + ([] if (directory / "tokenizer_config.json").is_file() else ["tokenizer_config.json"])


def start_folder_problem(directory: str | Path) -> str | None:
    """Why a local folder cannot start a run as its model.path (None when it can): a file transformers loads a model
    from missing, or, in a checkpoint, one that `bbuvl train` writes missing or cut short."""
    directory = Path(directory)
    if _has_training_files(directory):
        # Its chat template too: the run's processor, and through it its final/, has only what the start has, and
        # `bbuvl model export` refuses a checkpoint without one.
        return checkpoint_problem(directory) or (None if has_chat_template(directory) else f"{TEMPLATE_FILE} missing")
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        return f"no tokenizer ({' or '.join(TOKENIZER_FILES)} missing)"
    if missing := missing_model_files(directory):
        return f"{', '.join(missing)} missing"
    # As predict reads a plain folder (read_model_folder): a preprocessor_config.json holding a list was a traceback
    # from transformers after the data was read, a cut-short tokenizer_config.json a JSON message naming no file.
    return weights_problem(directory) or json_problem(directory) or template_problem(directory)


def weights_problem(directory: Path) -> str | None:
    """Why a folder's weights cannot be read, naming the file; None when they can: a safetensors file cut short or
    damaged (a plain folder's was a safetensors traceback, "incomplete metadata", in predict, serve and train), or a
    weights shard that is not there (`shards_problem`)."""
    if (problem := shards_problem(directory)) is not None:
        return problem
    for weights in sorted(directory.glob("*.safetensors")):
        if (problem := safetensors_problem(weights)) is not None:
            return f"{weights.name}: {problem}"  # the caller says what to do
    for weights in sorted(directory.glob("pytorch_model*.bin")):
        # torch.save's zip archive (an older base model's weights): one cut short was torch's bare "Invalid argument"
        with weights.open("rb") as fh:
            zipped = fh.read(4) == b"PK\x03\x04"
        if zipped and not zipfile.is_zipfile(weights):
            return f"{weights.name}: {weights.stat().st_size} bytes, its archive's end missing (a copy cut short?)"
    return None


# The names save_pretrained gives the shards of a model (pytorch_model-...bin: an older base model's)
SHARD = re.compile(r"^(model-\d{5}-of-\d{5}\.safetensors|pytorch_model-\d{5}-of-\d{5}\.bin)$")


def shards_problem(directory: Path) -> str | None:
    """Which of a sharded model's files is not there (a copy that lost one), naming it; None when none is missing.

    A shard the index names but the folder lacks was transformers' bare "No such file or directory" once the others
    had loaded; shards without their index, its "no file named model.safetensors", which names neither."""
    indexes = sorted([*directory.glob("*.safetensors.index.json"), *directory.glob("pytorch_model*.bin.index.json")])
    for index in indexes:
        try:
            weight_map = read_json(index).get("weight_map")
        except (OSError, ValueError, AttributeError):
            continue  # damaged: json_problem names it
        names = sorted({v for v in weight_map.values() if isinstance(v, str)}) if isinstance(weight_map, dict) else []
        gone = [name for name in names if not (directory / name).is_file()]
        if gone:
            return (f"{', '.join(gone[:3])}{f' and {len(gone) - 3} more' if len(gone) > 3 else ''} missing, of the "
                    f"{len(names)} weights files {index.name} names")
    shards = sorted(p.name for p in directory.glob("*model-*") if SHARD.match(p.name))
    whole = ("model.safetensors", "pytorch_model.bin")
    if shards and not indexes and not any((directory / name).is_file() for name in whole):
        index = "pytorch_model.bin.index.json" if shards[0].endswith(".bin") else "model.safetensors.index.json"
        return (f"{index} missing (it maps each tensor to one of the shards {shards[0]}, ...), without which no loader "
                "reads them")
    return None


def has_chat_template(directory: Path) -> bool:
    """Whether a model folder carries a chat template in one of the forms transformers saves it."""
    if (directory / TEMPLATE_FILE).is_file() or (directory / "chat_template.json").is_file():
        return True
    try:
        settings = read_json(directory / "tokenizer_config.json")
    except (OSError, ValueError):
        return False
    return isinstance(settings, dict) and bool(settings.get("chat_template"))


def checkpoint_problem(directory: str | Path) -> str | None:
    """Why a checkpoint folder is not complete (None when it is): a missing file, a cut-short weights file."""
    directory = Path(directory)
    for name in TRAINING_FILES:
        if not (directory / name).is_file():
            return f"{name} missing"
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        return f"no tokenizer ({' or '.join(TOKENIZER_FILES)} missing)"
    if missing := missing_model_files(directory):
        return f"{', '.join(missing)} missing"
    weights = sorted(directory.glob("*.safetensors"))
    if not any(w.name.startswith(("model", "adapter_model")) for w in weights):
        return "no model*.safetensors or adapter_model.safetensors"
    if (problem := shards_problem(directory)) is not None:
        return problem
    for w in weights:
        try:
            verify_safetensors(w)
        except CheckpointError as e:
            return str(e).split(";")[0]
    return json_problem(directory) or template_problem(directory)


def load_weights_into(model: Any, directory: str | Path) -> None:
    """Load a checkpoint's VLM (full or adapter) and head weights into an already built `BBUVLModel` (resume)."""
    from bbuvl.model.vlm import core_model

    directory = Path(directory)
    try:
        modules = read_extra_modules(model, directory)  # before the weights: one this version cannot resume, said first
    except OlderCheckpointError as e:
        raise OlderCheckpointError(e.module, e.cause, "this version cannot resume it: start a new run from its weights "
                                   f"(model.path={directory}, in a training.output_dir of its own), or resume it with "
                                   "the bbu-vl that wrote it") from None
    if is_peft(model.vlm):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model.vlm, load_file(directory / "adapter_model.safetensors"))
    else:
        if not any(directory.glob("model*.safetensors")):
            raise FileNotFoundError(f"{directory}: no model*.safetensors to resume from")
        from bbuvl.model.loading import WeightsMismatch, load_weights

        core = core_model(model.vlm)
        if (problem := family_problem(directory, core.config.model_type)) is not None:
            raise CheckpointError(problem)
        # from_pretrained applies transformers' checkpoint key mapping (saved names differ from module names).
        try:
            saved = load_weights(type(core), str(directory), dtype=next(core.parameters()).dtype)
            core.load_state_dict(saved.state_dict())
        except WeightsMismatch as e:
            raise CheckpointError(str(e)) from None
        except RuntimeError as e:  # load_state_dict: the checkpoint's model is another size than the run's
            if "size mismatch" not in str(e) and "Missing key" not in str(e) and "Unexpected key" not in str(e):
                raise
            raise CheckpointError(f"{directory}: its weights are not those of the model this run builds "
                                  f"({' '.join(str(e).split())[:300]}): its config.json is not the run's own; "
                                  "resume from a checkpoint of this run, or restore its config.json") from None
        del saved
    _load_modules(model, modules)


def family_problem(directory: Path, model_type: str) -> str | None:
    """Why a checkpoint's config.json cannot be resumed into a run building a `model_type` model: it is another
    family's (None when not, or when config.json names no family this version knows: the weights then say it).

    Its weights were loaded into the run's class, and the error said they "do not fit config.json" and to restore it,
    when config.json and the weights were one model of another family (tests/train/test_hostile_train_resume.py)."""
    try:
        theirs, ours = family_of(directory), get_family(model_type)
    except (ValueError, OSError):
        return None
    if theirs.model_type == ours.model_type:
        return None
    return (f"{directory}: its weights are not those of the model this run builds: its config.json is a {theirs.name} "
            f"model ({theirs.model_type!r}), and this run trains {ours.name} ({ours.model_type!r}, model.path); resume "
            "from a checkpoint of this run, or start a new run from it (model.path) in a training.output_dir of its own")


MODULE_NAMES = {HEAD_FILE: "detection head", POSITIONS_FILE: "vision positions", READOUT_FILE: "coordinate read-out"}


def older_keys(directory: Path, module: str, key: str) -> list[str]:
    """The keys building the module saved as `module` that the checkpoint's bbuvl.yaml lacks (`absent_keys`): an older
    bbu-vl wrote it, whose module was built without them. `key`: the key that turns the module on."""
    try:
        absent = absent_keys(read_run_config(directory))
    except (ValueError, OSError):
        return []  # a damaged config is named by whatever reads it
    prefix = "detection." if module == HEAD_FILE else key
    return [k for k in absent if k == prefix or k.startswith(prefix) or prefix.startswith(k + ".")]


def _older(file: Path, key: str, missing: bool) -> OlderCheckpointError | None:
    """The error for a module file that does not fit (or is `missing`) because an older bbu-vl wrote the checkpoint,
    else None: the file and its bbuvl.yaml are then of different runs."""
    absent = older_keys(file.parent, file.name, key)
    if not absent:
        return None
    keys = ", ".join(absent[:4]) + (f" and {len(absent) - 4} more" if len(absent) > 4 else "")
    name = MODULE_NAMES[file.name]
    cause = (f"{file}: missing: an older bbu-vl wrote this checkpoint without it (its {CONFIG_FILE} has no {keys}, "
             f"keys added since), and this config builds the {name}" if missing else
             f"{file}: written by an older bbu-vl, whose {name} had another layout than this version builds (its "
             f"{CONFIG_FILE} has no {keys}, keys added since)")
    return OlderCheckpointError(file.name, cause)


def unbuilt_modules(model: Any, directory: str | Path) -> list[tuple[Path, str]]:
    """(file, config key) of each module file in a checkpoint folder that a built `BBUVLModel` has no module for: its
    run config turns the key off (an edited bbuvl.yaml), so the file is not loaded. A head left out as an older
    bbu-vl's layout (`BBUVLModel.leave_out_head`) is not one: its config builds it, and the model says why it is gone."""
    left_out = HEAD_FILE if getattr(model, "head_left_out", None) is not None else None
    return [(Path(directory) / name, key) for module, name, key in extra_modules(model)
            if module is None and name != left_out and (Path(directory) / name).is_file()]


def unbuilt_positions_problem(model: Any, directory: str | Path) -> str | None:
    """Why a checkpoint's trained vision positions would be dropped when `model` is built without them, else None.

    Every mode reads them (the tower adds them to every image's tokens), so a model without them sees every photo
    otherwise than it trained (the demo's checkpoint, its positions dropped: head AP50 0.839 -> 0.798 on 8 validation
    photos). The head and the coordinate read-out are not read in every mode (generate mode reads no head; the
    read-out is a training loss's), so their files left unloaded are `bbuvl doctor model`'s to say."""
    for file, key in unbuilt_modules(model, directory):
        if file.name == POSITIONS_FILE:
            return (f"{file}: the checkpoint holds trained vision positions, but {Path(directory) / CONFIG_FILE} sets "
                    f"{key} false, so they would not be loaded and the model would see every photo otherwise than it "
                    f"trained; set {key}: true there (the run that saved them had it), or use a checkpoint trained "
                    "without them")
    return None


def read_extra_modules(model: Any, directory: str | Path) -> list[tuple[Any, dict[str, torch.Tensor]]]:
    """Each module a built `BBUVLModel` saves beside the VLM, with its tensors read from a checkpoint folder and checked
    against it (nothing loaded yet): CheckpointError naming a file that does not fit, or vision positions the model was
    built without (`unbuilt_positions_problem`), OlderCheckpointError when an older bbu-vl wrote it in another layout."""
    if (problem := unbuilt_positions_problem(model, directory)) is not None:
        raise CheckpointError(problem)  # skipped, they were dropped without a word: "all checks passed"
    found = []
    for module, name, what in extra_modules(model):
        if module is None:
            continue
        file = Path(directory) / name
        if not file.exists():
            raise _older(file, what, missing=True) or FileNotFoundError(
                f"{file}: missing, but the checkpoint's config sets {what}")
        saved = load_file(file)
        try:
            check_module_state(file, module.state_dict(), saved, "detection.*" if name == HEAD_FILE else what)
        except ValueError as e:
            raise _older(file, what, missing=False) or CheckpointError(str(e)) from None
        found.append((module, saved))
    return found


def load_extra_modules(model: Any, directory: str | Path) -> None:
    """Load the detection head and vision positions a built `BBUVLModel` has from a checkpoint folder; none is loaded
    when one does not fit (`read_extra_modules`' errors)."""
    _load_modules(model, read_extra_modules(model, directory))


def _load_modules(model: Any, modules: list[tuple[Any, dict[str, torch.Tensor]]]) -> None:
    device = next(model.vlm.parameters()).device
    for module, saved in modules:
        module.load_state_dict(saved)
        module.to(device)


def reuse_extra_modules(model: Any, directory: str | Path) -> dict[str, tuple[int, int]]:
    """Copy a checkpoint's head and vision-position tensors into a new `BBUVLModel`'s where name and shape agree.

    Returns, per module file found, (tensors copied, tensors of the new module). A new run on another label set
    or query count keeps what does not fit as built, so its head starts with the old one's boxes, not its labels.
    """
    reused: dict[str, tuple[int, int]] = {}
    for module, name, _ in extra_modules(model):
        file = Path(directory) / name
        if module is None or not file.exists():
            continue
        saved = load_file(file)
        state = module.state_dict()
        fits = {k: v for k, v in saved.items() if k in state and state[k].shape == v.shape}
        module.load_state_dict(fits, strict=False)
        reused[name] = (len(fits), len(state))
    return reused


@dataclass
class ModelFolder:
    """A model folder read once, before any weights load: what every consumer (predict, serve, doctor, the
    zero-shot baseline) needs to know about it. `load_model` turns it into a model."""

    path: Path
    trained: bool  # written by `bbuvl train`; else a plain Hugging Face model folder
    cfg: Config  # the run config it was trained with, or the one a run would build on it
    prompt: Prompt  # what the model is told and the labels it answers with
    frame: CoordinateContract | None  # its coordinate contract; None: a plain folder's own processor bounds
    adapter: bool = False  # LoRA adapters here, the base weights at `cfg.model.path`


def no_folder(path: Path) -> str | None:
    """What `path` is when it is no checkpoint folder (a file, a link that reaches none, nothing), else None."""
    if path.is_dir():
        return None
    if path.exists():
        return "a file, not a checkpoint folder"
    if path.is_symlink():  # "no such folder" sent the user looking for a folder whose link is right there
        return "a link that reaches no checkpoint folder (its target is gone, or its links lead in a loop)"
    if (left := stopped_swap(path)) is not None:
        return f"no such checkpoint folder: {left}"
    return "no such checkpoint folder"


def swap_names(folder: Path) -> tuple[Path, Path]:
    """The hidden names beside `folder` that a save replacing it whole uses: the new one saved; and the one bbu-vl set
    the old one aside as before `atomic.replace_folder` named aside folders by their writer's pid (still put back)."""
    return folder.with_name(f".{folder.name}.saving"), folder.with_name(f".{folder.name}.old")


def swap_in(staging: Path, folder: Path) -> None:
    """Replace `folder` with the finished `staging` folder by two renames (`atomic.replace_folder`): a kill mid-save
    never leaves it half-written, and a kill between the renames leaves both whole beside it, for `finish_swap` to put
    back."""
    remove_path(swap_names(folder)[1])  # a link there goes as a link, never what it names
    replace_folder(staging, folder)


def _left_whole(folder: Path) -> Path | None:
    """The whole checkpoint a swap of `folder` stopped between its renames left beside it: the new one, else the old."""
    if os.path.lexists(folder):
        return None
    # A writer of another process holding it (or a folder above it) is between its renames now, not stopped: what is
    # aside is its own, whatever pid its name carries (in a container, pid 1 for every writer)
    if writer_around(folder) is not None:
        return None
    new, before = swap_names(folder)
    return next((p for p in (new, *set_aside_by_dead_writers(folder), before)
                 if p.is_dir() and not p.is_symlink() and checkpoint_problem(p) is None), None)


def stopped_swap(folder: Path) -> str | None:
    """What a save of `folder` stopped between its two renames left beside it, and what to do (None: nothing left)."""
    left = _left_whole(folder)
    if left is None:
        return None
    which = "the new one" if left == swap_names(folder)[0] else "the one before"
    # train's own names, else a folder any command writes whole set aside (`atomic.replace_folder`)
    who = "`bbuvl train --resume` of the run" if left in swap_names(folder) else "the next command that writes it"
    return (f"a save replacing it was stopped between its two renames, and {left} holds {which}, whole. "
            f"{who} puts it back under {folder.name}, as does renaming it yourself")


def finish_swap(folder: Path) -> Path | None:
    """Put back under `folder` the whole checkpoint a stopped swap left beside it (the new one, else the old) and remove
    the other; returns the folder put back, None when there was nothing to finish."""
    left = _left_whole(folder)
    if left is None:
        return None
    left.rename(folder)
    for other in swap_names(folder):
        remove_path(other, ignore_errors=True)
    remove_dead_writers_temporaries(folder)  # the folder set aside (emptied, when it was the one put back)
    return left


def read_model_folder(path: str | Path, labels: list[str] | None = None, lang: str | None = None,
                      cfg: Config | None = None, system: str | None = None) -> ModelFolder:
    """Read a checkpoint folder (its run config, contract and prompt) or describe a plain model folder.

    A plain folder has no prompt of its own: `labels` are what it answers with, `lang` its prompt's language, `system`
    the system prompt verbatim when one was recorded with the labels (an export's, `recorded_prompt`; else it is built
    from the labels and the hierarchy) and `cfg` (optional) a run config to check before training (its frame, head and
    positions, as `bbuvl train` would build them); without `cfg` it keeps its family's own contract, generate mode only
    (no head, no positions). A checkpoint answers with its own labels: giving it `labels`, `cfg` or `system` is an error.
    """
    path = Path(path)
    if is_plain_model_folder(path):
        if labels is None:
            raise ValueError(f"{path} is a plain model folder (no {CONFIG_FILE}): give the labels it answers with")
        if problem := json_problem(path) or template_problem(path) or weights_problem(path):
            raise CheckpointError(f"{path}: damaged model folder ({problem}); re-copy it or use another")
        return _plain_folder(path, labels, lang, cfg, system)
    if labels is not None or cfg is not None or system is not None:
        raise ValueError(f"{path}: a checkpoint written by bbu-vl answers with the labels and config it was trained "
                         "with (its prompt.json); labels, cfg and a system prompt are for a plain model folder")
    if (missing := no_folder(path)) is not None:
        raise (NotADirectoryError if path.exists() else FileNotFoundError)(f"{path}: {missing}")
    problem = checkpoint_problem(path)
    if problem:
        raise CheckpointError(not_a_checkpoint(path) or
                              f"{path}: incomplete or damaged checkpoint ({problem}); use another checkpoint or re-copy it")
    run = read_run_config(path)
    if "vision_positions" not in run.model.model_fields_set and not (path / POSITIONS_FILE).exists():
        run.model.vision_positions = False  # trained before vision positions existed
    say_relative_run_files(path, run)
    return ModelFolder(path, True, run, Prompt.load(path), CoordinateContract.load(path),
                       adapter=(path / "adapter_config.json").exists())


_SAID: set[str] = set()  # the notes of `relative_run_files` this process has given


def say_relative_run_files(path: Path, run: Config, keys: tuple[str, ...] = ("data.teachers", "data.hierarchy")) -> None:
    """Warn, once a process, which file each relative data.teachers or data.hierarchy of a checkpoint is read from."""
    for note in relative_run_files(path, run, keys):
        if note not in _SAID:  # a command reads its folder more than once (its base, its mode, its model)
            _SAID.add(note)
            log.warning("%s", note)


def relative_run_files(path: Path, run: Config,
                       keys: tuple[str, ...] = ("data.teachers", "data.hierarchy")) -> list[str]:
    """Which file a checkpoint's relative data.teachers or data.hierarchy is read from, where one is there: a run now
    records them absolute (train/trainer.py `with_data_located`); one trained before kept them as typed, and every
    command reads them from the folder it runs in, maybe another dataset's file of that name. Missing ones are named
    where they are read."""
    notes = []
    for key, option, value in (("data.teachers", "--teachers", run.data.teachers),
                               ("data.hierarchy", "--hierarchy", run.data.hierarchy)):
        if key in keys and value is not None and not Path(value).is_absolute() and os.path.lexists(value):
            notes.append(f"{path / CONFIG_FILE} names {key} as {value}, relative to a folder it does not record (a "
                         f"checkpoint trained before runs recorded where their data was): unless {option} names one, it "
                         f"is read from the folder this command runs in, {real_path(value)}, which may not be the file "
                         "the run trained with")
    return notes


def stored_dtype(path: Path) -> str | None:
    """The dtype a plain model folder's config.json records (`dtype`, or `torch_dtype` before transformers 4.56) when it
    is one `model.dtype` takes; None for a hub id, or a folder recording none or another."""
    file = path / "config.json"
    if not file.is_file():
        return None
    config = read_json(file, "model config")
    if not isinstance(config, dict):
        return None
    dtype = config.get("dtype", config.get("torch_dtype"))
    return dtype if dtype in ("bfloat16", "float16", "float32") else None


def _plain_folder(path: Path, labels: list[str], lang: str | None, cfg: Config | None,
                  system: str | None = None) -> ModelFolder:
    from bbuvl.data.labels import Hierarchy
    from bbuvl.encode.prompts import system_prompt

    family = family_of(path)
    own_frame, frame = cfg is None, None
    if own_frame:
        cfg = Config()
        cfg.model.family, cfg.detection.enabled, cfg.model.vision_positions = family.model_type, False, False
        generation = path / "generation_config.json"
        saved = read_json(generation, "generation config") if generation.is_file() else None
        budget = saved.get("max_new_tokens") if isinstance(saved, dict) else None
        if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
            cfg.inference.max_new_tokens = budget  # the folder's own answer budget (`bbuvl model export` writes it)
        if (stored := stored_dtype(path)) is not None:
            cfg.model.dtype = stored  # as stock transformers loads the folder: an fp32 export run in bf16 answered otherwise
        if (frame := export_frame(path)) is not None:
            # An export frames each photo as its checkpoint did, where its processor's bounds and the default
            # vision-token budget framed some otherwise (a budget over 1,280 tokens, a photo scaled up past it).
            cfg.model.min_pixels, cfg.model.max_pixels = frame.min_pixels, frame.max_pixels
            cfg.model.max_vision_tokens = frame.max_vision_tokens or cfg.model.max_vision_tokens
    else:
        cfg = cfg.model_copy(deep=True)
    cfg.model.path = str(path)
    if lang is not None:
        cfg.data.lang = lang
    if not own_frame and cfg.model.resolve_family() is not family:  # before minutes of loading
        raise ValueError(f"the config says model.family {cfg.model.family} but {path} holds a {family.model_type} model")
    if system is None:
        system = system_prompt(labels, Hierarchy.load(cfg.data.hierarchy), cfg.data.lang, family.model_type)
    prompt = Prompt(system, labels, cfg.data.lang)
    return ModelFolder(path, False, cfg, prompt, frame if own_frame else cfg.model.frame())


def lora_base(path: str | Path) -> Path | None:
    """The local folder a LoRA checkpoint loads its base weights from: an input of whatever reads the checkpoint, so
    never an output (merging into it would change what the adapters apply to). None: not a readable LoRA checkpoint,
    or a base given as a hub id."""
    base = adapters_base(path)
    return Path(base) if base is not None and Path(base).exists() else None


def adapters_base(path: str | Path) -> str | None:
    """The base model a LoRA checkpoint's adapters were trained on and load over (model.path in its bbuvl.yaml), as
    recorded, there or not; None: not a readable LoRA checkpoint."""
    try:
        folder = read_model_folder(path)
    except (ValueError, OSError):
        return None
    return folder.cfg.model.path if folder.adapter else None


def check_lora_base(checkpoint: str | Path, base: str | Path) -> None:
    """Raise CheckpointError when the base folder a LoRA checkpoint loads is not the one its adapters trained on
    (a checkpoint saved before fingerprints, or with a base from the hub, is not checked)."""
    if not Path(base).is_dir():
        return
    changes = base_changes(checkpoint, base)
    if changes is None and BASE_FILE in recorded_digests(Path(checkpoint)):
        # Training fingerprinted the base, and the copy lost the file: the check was skipped as for a checkpoint that
        # never had one, and adapters over a base replaced since answered wrongly without a word.
        raise CheckpointError(f"{Path(checkpoint) / BASE_FILE}: missing, though training saved it ({DIGEST_FILE} "
                              f"records it): it fingerprints the base model the LoRA adapters trained on, without which "
                              f"the base now at {base} (model.path in its {CONFIG_FILE}) cannot be told from another. "
                              "Re-copy the checkpoint with it; if that base is the one they trained on, fold the "
                              f"adapters into it with `bbuvl model merge-lora {shell_word(checkpoint)} OUT --accept-base`")
    if changes:
        shown = ", ".join(changes[:4]) + (f" and {len(changes) - 4} more" if len(changes) > 4 else "")
        raise CheckpointError(f"{checkpoint}: its LoRA adapters were trained on another base model than the one now at "
                              f"{base} (model.path in its {CONFIG_FILE}; {shown}): applied to it they would give wrong "
                              f"answers. Put that base back at {base}, or set model.path in "
                              f"{Path(checkpoint) / CONFIG_FILE} to where it is; if {base} holds the same model saved "
                              f"again, fold the adapters into it with `bbuvl model merge-lora {shell_word(checkpoint)} OUT --accept-base` (or "
                              "`bbuvl model export --accept-base`)")


def load_model(folder: ModelFolder | str | Path, dtype: str | None = None, device: str | None = None,
               accept_base: bool = False, attn_implementation: str | None = None,
               load_in_bits: int = 16, train_adapters: bool = False) -> tuple[Any, Any, Config, CoordinateContract, Prompt]:
    """A `BBUVLModel` (eval mode) ready to predict, its processor, run config, coordinate contract and prompt: the
    one way a model folder is loaded. A path is read with `read_model_folder` (a checkpoint; a plain model folder
    is read there first, with the labels it answers with). A LoRA checkpoint's base must be the one it trained on,
    unless `accept_base` (the user says it holds the same model saved again). `attn_implementation` (default the
    folder's) and `load_in_bits` (QLoRA) as `load_model_and_processor` takes them, refused where they cannot run.
    `train_adapters`: a LoRA checkpoint's adapters load trainable (a run that trains them on), else frozen."""
    from bbuvl.model.loading import WeightsMismatch, load_model_and_processor
    from bbuvl.model.processor import pixel_range
    from bbuvl.model.vlm import BBUVLModel

    if not isinstance(folder, ModelFolder):
        folder = read_model_folder(folder)
    run = folder.cfg.model_copy(deep=True)  # the folder's stays as read (a plain folder's bounds are set below)
    # LoRA: the base weights from where training loaded them, the processor (and adapters) from the checkpoint.
    weights = run.model.path if folder.adapter else str(folder.path)
    if folder.adapter and not accept_base:
        check_lora_base(folder.path, weights)  # before minutes of loading
    try:
        vlm, processor = load_model_and_processor(weights, dtype=dtype or run.model.dtype,
                                                  attn_implementation=attn_implementation or run.model.attn_implementation,
                                                  frame=folder.frame, device=device, processor_path=str(folder.path),
                                                  load_in_bits=load_in_bits)
    except WeightsMismatch as e:
        raise CheckpointError(str(e)) from None
    except (OSError, ValueError) as e:  # ValueError: a local-looking path that is not there (paths.py)
        if not folder.adapter or Path(weights).is_dir():
            raise
        # HF's words would speak of a hub connection or a repository id, not of the base the adapters need.
        raise CheckpointError(f"{folder.path}: a LoRA checkpoint whose base model '{weights}' (model.path in its "
                              f"{CONFIG_FILE}) is not a folder here, and loading it by that name failed "
                              f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); put "
                              f"the base back there, or set model.path in {folder.path / CONFIG_FILE} to where it "
                              "is") from None
    if folder.adapter:
        from peft import PeftModel

        # peft loads adapters frozen unless told otherwise: a run from them trained none of them, and said nothing.
        vlm = PeftModel.from_pretrained(vlm, str(folder.path), is_trainable=train_adapters)
    contract = folder.frame
    if contract is None:  # a plain folder's own processor bounds (already the processor's: nothing to set)
        run.model.min_pixels, run.model.max_pixels = pixel_range(processor)
        contract = run.model.frame()
    model = BBUVLModel.build(vlm, run, processor.tokenizer)
    if folder.trained:
        try:
            load_extra_modules(model, folder.path)
        except OlderCheckpointError as e:
            if e.module != HEAD_FILE:
                raise
            # Generate mode reads the language model alone, which loads: an older bbu-vl's checkpoint answers in it as
            # it did there. Head mode is refused naming why (`BBUVLModel.no_head`).
            model.leave_out_head(f"{e.cause}: this version cannot load it; retrain for a head, or predict in head mode "
                                 "with the bbu-vl that wrote it")
            log.warning("%s; this version cannot load it, so the model is loaded without it: generate mode only",
                        e.cause)
            load_extra_modules(model, folder.path)
    elif device is not None:
        model.to(device)
    return model.eval(), processor, run, contract, folder.prompt


def merge_lora(src: str | Path, dst: str | Path, accept_base: bool = False) -> Path:
    """Fold a LoRA checkpoint's adapters into the base weights and save a plain checkpoint (same head, prompt, contract);
    `accept_base`: fold them into the base model.path holds now even when it is not the one they trained on.

    Its training scale and the files chosen for it (`CHOSEN_LATER`) are read once, before the weights load, and
    written as read (`taken_choices`): copied once the weights had loaded, they carried a choice
    `eval --choose-thresholds` or `choose-tiles` made meanwhile beside the checkpoint being read."""
    taken = taken_choices(src)
    scale = TrainingScale.load(src, taken)  # before minutes of loading: a damaged one is refused naming it
    model, processor, cfg, contract, prompt = load_model(src, dtype="float32", accept_base=accept_base)
    if not is_peft(model.vlm):
        raise ValueError(f"{src}: not a LoRA checkpoint (no adapter_config.json)")
    model.vlm = model.vlm.merge_and_unload()
    cfg = cfg.model_copy(deep=True)
    cfg.model.lora.enabled = False
    cfg.model.path = str(real_path(dst))  # as typed, a relative OUT named another folder to whatever read it elsewhere
    with atomic_folder(dst) as tmp:  # a merge killed half-way leaves the previous folder, never half a model
        write_taken(taken, tmp, CHOSEN_LATER)  # restamped for the merged folder below, once its digests are recorded
        save_checkpoint(model, processor, cfg, contract, prompt, tmp, scale=scale)
        restamp_chosen(src, tmp)  # the thresholds chosen for the adapters' model are the merged model's
        record_digests(tmp)
    return Path(dst)
