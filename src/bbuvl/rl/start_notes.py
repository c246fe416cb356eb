"""What a GRPO run's start says of its config before any weights load, and what `bbuvl config check` says of it too:
the settings GRPO reads nothing from, from a plain model folder the model it builds, and from a bbu-vl checkpoint the
frame it refuses to change, the keys it keeps of the checkpoint's and, from a LoRA checkpoint, the adapters it trains
on (docs/grpo.md)."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from bbuvl.config import PREDICT_MODES, BudgetError, BudgetProblem, Config
from bbuvl.data.coords import CoordinateContract
from bbuvl.model.checkpoint import ModelFolder, is_plain_model_folder, read_model_folder


# Every key of config.py's schema a GRPO run reads, whatever it starts from; a key ending in "." names its whole
# section. From a checkpoint the model, data and detection keys among them describe the model the checkpoint is, whose
# own values are kept (`kept_from_checkpoint`); from a plain model folder the config's build it.
READ = ("model.path", "model.family", "model.attn_implementation", "model.dtype", "model.min_pixels",
        "model.max_pixels", "model.max_vision_tokens", "model.vision_positions", "model.shared_prefix", "model.lora.",
        "data.train", "data.val", "data.hierarchy", "data.lang", "data.num_workers", "data.crop.", "data.mirror",
        "training.method", "training.output_dir", "training.seed", "training.num_epochs", "training.max_steps",
        "training.per_device_batch_size", "training.gradient_accumulation_steps", "training.lr.vision",
        "training.lr.merger", "training.lr.llm", "training.lr.adapter", "training.weight_decay",
        "training.warmup_ratio", "training.lr_scheduler", "training.max_grad_norm", "training.ema_decay",
        "training.bf16", "training.gradient_checkpointing", "training.logging_steps", "training.save_steps",
        "training.eval_steps", "training.save_total_limit", "training.max_consecutive_nan", "training.deepspeed",
        "training.use_cpu",
        # The head a plain folder's run builds when the config names one, or a checkpoint's, kept: never trained
        "detection.enabled", "detection.num_queries", "detection.two_stage", "detection.query_nms",
        "detection.encoder_layers", "detection.local_layers", "detection.roi_points", "detection.fine_features",
        "detection.pixel_points", "detection.pixel_box", "detection.pixel_context", "detection.box_refine",
        "detection.decoder_layers", "detection.grad_to_vlm", "detection.caption_layers", "detection.num_heads",
        "detection.d_model", "detection.adapter_ratio", "detection.box_format", "detection.caption_max_tokens",
        "detection.dropout",
        "inference.", "grpo.")
# Read from a checkpoint only, as a description of how it was trained, kept as the model keys are; from a plain model
# folder nothing of them is built or trained (`UNREAD_FROM_PLAIN`).
KEPT_FROM_CHECKPOINTS = ("model.max_vision_tokens_per_batch", "model.reuse_modules", "detection.caption_refit.",
                         "loss.")

_TEACHERS = "rollouts are drawn from the photo alone, no teacher shown"
_PADDED = "rollouts are scored as padded rows"
# Why GRPO reads nothing from each key it never reads, whatever it starts from: `grpo_ignores` says each set away from
# its default, the keys of one reason together. A key of the schema in neither READ nor here is said as well, for
# want of a reason (tests/rl/test_start_notes.py fails on it until it is placed).
UNREAD = {
    "data.teachers": _TEACHERS, "data.teacher_ratio": _TEACHERS, "data.num_teachers": _TEACHERS,
    "data.val_teachers": _TEACHERS,
    "data.collator": _PADDED, "data.pack_max_tokens": _PADDED,
    "data.padding_side": "rollouts are generated left-padded and scored right-padded, whatever it says",
    "data.max_length": "a rollout is its photo's prompt and up to grpo.max_new_tokens answer tokens, never cut",
    "data.oversize": "every photo is resized to the frame, as predict does; none is skipped",
    "data.sample_cache_mb": "rollouts are drawn afresh each step, nothing encoded is kept",
    "training.lr.detection": "the head is frozen, rewards reach the answer's tokens only",
    "training.detection_freeze_epochs": "the head is frozen for the whole run, rewards reach the answer's tokens only",
    "monitor.": "GRPO runs neither the training-health monitors nor early stopping; watch its rewards "
                "(history.json, TensorBoard)",
}
# From a plain model folder, besides: `plain_start` builds the model with their defaults, which its checkpoints record.
UNREAD_FROM_PLAIN = {
    "model.max_vision_tokens_per_batch": "a step's rollouts are collated whole, never split to a vision-token budget; "
                                         "its checkpoints record the default",
    "model.reuse_modules": "a plain model folder holds no head or vision positions to reuse; its checkpoints record "
                           "the default",
    "detection.caption_refit.": "GRPO refits no captions (the head is frozen, rewards reach the answer's tokens "
                                "only); its checkpoints record the defaults",
    "loss.": "GRPO trains by its own objective (grpo.*), never SFT's losses, and from a plain model folder builds "
             "nothing for them (no digit ids, coordinate read-out or attention capture): its checkpoints record "
             "loss's defaults",
}
UNPLACED = "GRPO reads nothing from it"
# The value of an unread key that is not said, where it is not the schema's default, and that a GRPO checkpoint's
# bbuvl.yaml records for it (`quieted`): config.py's default names a teachers file, which SFT reads, so a config without
# teachers sets null; and its default rate for the head, which SFT applies, so 0 is the rate the head trained at here.
QUIET = {"data.teachers": None, "training.lr.detection": 0.0}


_DEFAULT = object()  # `_reset`'s value when none is given: config.py's default


def _named_by(key: str, entries: tuple[str, ...] | dict[str, str]) -> str | None:
    """The entry of `entries` that names `key`: the key itself, or the longest section ("x.") holding it."""
    found = [e for e in entries if e == key or (e.endswith(".") and key.startswith(e))]
    return max(found, key=len) if found else None


def unread_reason(key: str, plain: bool) -> str | None:
    """Why a GRPO run reads nothing from config key `key` (dotted), starting from a plain model folder when `plain`
    (else a checkpoint); None when it reads it."""
    if (entry := _named_by(key, UNREAD)) is not None:
        return UNREAD[entry]
    if plain and (entry := _named_by(key, UNREAD_FROM_PLAIN)) is not None:
        return UNREAD_FROM_PLAIN[entry]
    if _named_by(key, READ) is not None or (not plain and _named_by(key, KEPT_FROM_CHECKPOINTS) is not None):
        return None
    return UNPLACED


def schema_values(section: BaseModel, prefix: str = "", given_only: bool = False) -> dict[str, Any]:
    """Every leaf key of a config (or one of its sections) with its value, dotted under `prefix`; with `given_only`,
    only the keys its config names (in its file or an override), nested ones too."""
    out: dict[str, Any] = {}
    names = section.model_fields_set if given_only else type(section).model_fields
    for name in names:
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            out.update(schema_values(value, f"{prefix}{name}.", given_only))
        else:
            out[f"{prefix}{name}"] = value
    return out


def grpo_ignores(cfg: Config) -> list[BudgetProblem]:
    """The settings of `cfg` that GRPO reads nothing from (each with why, and its keys), so that a run can say so."""
    ignored = []
    t = cfg.training
    # data.val is scored at the end too, whatever training.eval_steps: it was said to be ignored, then scored
    if given := sorted(cfg.monitor.model_fields_set):
        # The SFT monitors and early stopping read the supervised losses: set, they did nothing here, unsaid
        keys = tuple(f"monitor.{k}" for k in given)
        ignored.append(BudgetProblem(f"{', '.join(keys)}: {UNREAD['monitor.']}", keys))
    ignored += unread_settings(cfg)
    w = cfg.grpo.rewards
    if w.user_function and not w.called_function:  # a function named, its weight left at the default 0: never called
        ignored.append(BudgetProblem(f"grpo.rewards.user_function ({w.user_function}): grpo.rewards.user is 0, so the "
                                     "function is never called and pays no reward (nor is it imported or recorded); "
                                     "give grpo.rewards.user a weight above 0 to use it",
                                     ("grpo.rewards.user_function", "grpo.rewards.user")))
    if 0 < t.max_steps < t.logging_steps:  # the rewards are what a GRPO run is watched by: none would be shown
        ignored.append(BudgetProblem(f"training.logging_steps ({t.logging_steps}): the run stops at training.max_steps "
                                     f"({t.max_steps}) before its first log, so no reward, KL or answer length is "
                                     "logged", ("training.logging_steps", "training.max_steps")))
    return ignored


def unread_settings(cfg: Config) -> list[BudgetProblem]:
    """Each key of `cfg` set away from its default (`QUIET`'s value, where it names one: the head's rate is said at its
    default too) that GRPO reads nothing from, from the start `cfg.model.path` is, the keys of one reason said together
    with it (the monitors are said by `grpo_ignores`)."""
    plain = is_plain_model_folder(cfg.model.path)
    quiet = {**schema_values(Config()), **QUIET}
    by_reason: dict[str, dict[str, Any]] = {}
    for key, value in schema_values(cfg).items():
        if key.startswith("monitor.") or value == quiet[key]:
            continue
        if (why := unread_reason(key, plain)) is not None:
            by_reason.setdefault(why, {})[key] = value
    return [BudgetProblem(f"{', '.join(f'{k} ({v})' for k, v in keys.items())}: {why}", tuple(keys))
            for why, keys in by_reason.items()]


def plain_start(cfg: Config) -> tuple[Config, list[BudgetProblem]]:
    """The config a GRPO run from a plain model folder (a base model) builds its model with, and a note for each model
    or detection setting that decides the saved checkpoint and that `cfg` leaves to config.py's defaults.

    From a checkpoint GRPO trains the model the checkpoint is, its own settings kept (`kept_from_checkpoint`); from a
    plain folder the model is built from `cfg`, whose defaults are no pretrained model's (configs/base.yaml's are):
    vision positions on, which `bbuvl model export` refuses (docs/serving.md, "Training portable"), and a detection
    head, which GRPO never trains. So the head is left out unless `cfg` names one (or a mode that reads it), and
    each default said. What GRPO never reads from a plain folder (`UNREAD_FROM_PLAIN`: SFT's losses, the caption refit,
    module reuse, the vision-token budget) is left at its defaults."""
    start, notes = cfg.model_copy(deep=True), []
    # Nothing of these trains here (said by `grpo_ignores`): built from loss's, the model held an untrained coordinate
    # read-out, and its checkpoints recorded them as if they had trained it.
    for entry in UNREAD_FROM_PLAIN:
        _reset(start, entry)
    if cfg.model.vision_positions and "vision_positions" not in cfg.model.model_fields_set:
        notes.append(BudgetProblem(
            f"model.path {cfg.model.path} is a plain model folder, and the config leaves model.vision_positions to its "
            "default, true: the run trains vision positions into a pretrained model, which trains without them "
            "(configs/base.yaml), and `bbuvl model export` refuses its checkpoints (docs/serving.md, \"Training "
            "portable\"); set model.vision_positions: false, as configs/grpo.yaml does", ("model.vision_positions",)))
    if not cfg.detection.enabled:
        return start, notes
    reading = [name for name, mode in PREDICT_MODES.items() if mode.needs_head]
    if "enabled" in cfg.detection.model_fields_set or cfg.inference.mode in reading:
        notes.append(BudgetProblem(
            f"model.path {cfg.model.path} is a plain model folder and detection.enabled is true: the run builds a new "
            "detection head and never trains it (rewards reach the answer's tokens only), so its checkpoints' head "
            f"answers by untrained weights in the modes that read it ({', '.join(reading)}); fine-tune the head with "
            "training.method sft first, or set detection.enabled: false", ("detection.enabled", "inference.mode")))
        return start, notes
    start.detection.enabled = False
    notes.append(BudgetProblem(
        f"model.path {cfg.model.path} is a plain model folder, and the config leaves detection.enabled to its default, "
        "true: GRPO never trains a detection head, so the run builds none and its checkpoints hold none (the other "
        "detection.* keys do nothing); fine-tune with training.method sft for a head", ("detection.enabled",)))
    return start, notes


def _reset(cfg: Config, entry: str, value: Any = _DEFAULT) -> None:
    """Set the key (or the section, ending in ".") `entry` of `cfg` to `value`, by default config.py's default."""
    *path, name = entry.rstrip(".").split(".")
    section: Any = cfg
    for part in path:
        section = getattr(section, part)
    if value is _DEFAULT:
        value = type(section).model_fields[name].get_default(call_default_factory=True)
    setattr(section, name, copy.deepcopy(value))  # a section's default is one object, shared by every config


def unread_keys(plain: bool, within: tuple[str, ...] = ("",)) -> list[str]:
    """Every key of config.py's schema under `within` (dotted prefixes) that a GRPO run reads nothing from
    (`unread_reason`), starting from a plain model folder when `plain`, else from a checkpoint."""
    return [key for key in schema_values(Config()) if key.startswith(within) and unread_reason(key, plain) is not None]


def quieted(cfg: Config, keys: list[str]) -> Config:
    """A copy of `cfg` with each of `keys` at the value that says no setting was made: `QUIET`'s, else config.py's
    default."""
    out = cfg.model_copy(deep=True)
    for key in keys:
        if key in QUIET:
            _reset(out, key, QUIET[key])
        else:
            _reset(out, key)
    return out


def adapter_start(cfg: Config, start: Config) -> list[BudgetProblem]:
    """What a GRPO run from a LoRA checkpoint (config `start`) says at its start: the adapters it trains on, and each
    `model.lora` key of `cfg` the loaded adapters are not built as. BudgetError (a ConfigError locating
    model.lora.enabled) when `cfg` trains without LoRA."""
    path, ours, theirs = cfg.model.path, cfg.model.lora, start.model.lora
    if not ours.enabled:
        # peft froze the base and the adapters loaded frozen: such a run trained the vision positions alone, and said
        # nothing. Training the whole model needs the adapters merged into it first (docs/grpo.md, "From LoRA").
        raise BudgetError([BudgetProblem(
            f"model.path {path} is a LoRA checkpoint (adapters over the base model {start.model.path}), but "
            "model.lora.enabled is false, which trains the whole model: set model.lora.enabled: true to train its "
            f"adapters on, or merge them into the base first (bbuvl model merge-lora {path} OUT) and start from OUT "
            "to train the whole model", ("model.lora.enabled", "model.path"))])
    notes = [BudgetProblem(f"model.path {path} is a LoRA checkpoint: this run trains its adapters on from their values "
                           f"there (r {theirs.r}, alpha {theirs.alpha}), and the KL term's reference is them as loaded",
                           ("model.path",))]
    shape = ("r", "alpha", "dropout", "target_modules", "vision")
    differ = {f"model.lora.{k}": f"model.lora.{k} {getattr(ours, k)} (the checkpoint's: {getattr(theirs, k)})"
              for k in shape if k in ours.model_fields_set and getattr(ours, k) != getattr(theirs, k)}
    if differ:
        notes.append(BudgetProblem(
            f"the loaded adapters are built as the checkpoint built them, so the config's {'; '.join(differ.values())} "
            "do not apply and its checkpoints record the starting checkpoint's; remove these keys, or set them to the "
            "checkpoint's", tuple(differ)))
    return notes


def frame_conflicts(cfg: Config, frame: CoordinateContract) -> dict[str, str]:
    """The `model.*` frame settings `cfg` names (in its file or an override) that differ from the starting
    checkpoint's `frame`, each key with both values: GRPO answers in the checkpoint's frame, so they cannot apply."""
    given = cfg.model.model_fields_set
    ours = {k: getattr(cfg.model, k) for k in ("min_pixels", "max_pixels", "max_vision_tokens") if k in given}
    if cfg.model.family != "auto":
        ours["family"] = cfg.model.family
    return {f"model.{k}": f"model.{k} {v} (the checkpoint's: {getattr(frame, k)})"
            for k, v in ours.items() if v != getattr(frame, k)}


# What a GRPO run applies of its own config over its starting checkpoint's (rl/trainer.py `grpo_saved_config`), refuses
# when it differs (the frame: `frame_conflicts`) and reads nothing from (`unread_reason`; `grpo_ignores` names those
# set): every other model, data, detection or loss key is the checkpoint's, which the run keeps
# (`kept_from_checkpoint`).
APPLIED = ("model.path", "model.attn_implementation", "model.dtype", "model.lora", "data.train", "data.val",
           "data.hierarchy", "data.crop", "data.mirror", "data.num_workers")
REFUSED = ("model.family", "model.min_pixels", "model.max_pixels", "model.max_vision_tokens")


def kept_from_checkpoint(cfg: Config, start: Config) -> dict[str, str]:
    """The model, data, detection and loss keys `cfg` names whose value differs from the starting checkpoint's config
    `start`, each with both values: they describe the model the checkpoint is, which GRPO trains as it is."""
    kept = {}
    for section in ("model", "data", "detection", "loss"):
        for key, value in schema_values(getattr(cfg, section), f"{section}.", given_only=True).items():
            if key.startswith(tuple(f"{k}." for k in APPLIED)) or key in APPLIED + REFUSED:
                continue
            if unread_reason(key, plain=False) is not None:  # said as ignored, not as kept
                continue
            theirs: Any = start
            for part in key.split("."):
                theirs = getattr(theirs, part)
            if value != theirs:
                kept[key] = f"{key} {value} (the checkpoint's: {theirs})"
    return kept


def checkpoint_start(cfg: Config, folder: ModelFolder | None = None) -> list[BudgetProblem]:
    """What a GRPO run's start says of the bbu-vl checkpoint at `cfg.model.path` (`folder`, when the caller has read
    it) before its weights load: each key of `cfg` it keeps the checkpoint's value of, and from a LoRA checkpoint the
    adapters it trains on (`adapter_start`). BudgetError where the start refuses it: a frame other than the
    checkpoint's (`frame_conflicts`), or a LoRA checkpoint without LoRA. Nothing for a plain model folder or one that
    cannot be read here (`bbuvl config check` names that apart, the run's start refuses it)."""
    if folder is None:
        if is_plain_model_folder(cfg.model.path):
            return []
        try:
            folder = read_model_folder(cfg.model.path)
        except (OSError, ValueError):
            return []
    if not folder.trained:
        return []
    path, refused, notes = cfg.model.path, [], []
    if conflicts := frame_conflicts(cfg, folder.frame):
        # Rollouts are drawn, scored and saved in the frame the checkpoint learned its answers in (docs/grpo.md).
        refused.append(BudgetProblem(
            f"model.path {path} is a checkpoint with its own coordinate frame, which GRPO trains in, but the config "
            f"sets {'; '.join(conflicts.values())}: remove these keys from the config, or set them to the checkpoint's "
            "values", (*conflicts, "model.path")))
    if folder.adapter:
        try:
            notes += adapter_start(cfg, folder.cfg)
        except BudgetError as e:
            refused += e.problems
    if refused:
        raise BudgetError(refused)
    if kept := kept_from_checkpoint(cfg, folder.cfg):
        # Noted, not refused as the frame is: none of them changes a rollout or its reward (docs/grpo.md).
        notes.append(BudgetProblem(
            f"model.path {path} is a checkpoint, and GRPO trains the model it is: the config's "
            f"{'; '.join(kept.values())} do not apply, and its checkpoints keep the starting checkpoint's values; "
            "remove these keys from the config, or set them to the checkpoint's", tuple(kept)))
    return notes


def start_notes(cfg: Config) -> list[BudgetProblem]:
    """What a GRPO run's start says of `cfg` before any weights load: each setting it ignores (`grpo_ignores`, said as
    such) and, from a plain model folder here, each default it builds the model with (`plain_start`), or from a bbu-vl
    checkpoint here, the keys it keeps of the checkpoint's and a LoRA checkpoint's adapters (`checkpoint_start`:
    BudgetError where the start refuses its frame or adapters)."""
    notes = [BudgetProblem(f"training.method grpo ignores {n}", n.keys) for n in grpo_ignores(cfg)]
    return notes + (plain_start(cfg)[1] if is_plain_model_folder(cfg.model.path) else checkpoint_start(cfg))
