"""What a GRPO run's start says of its config before any weights load, and what `bbuvl config check` says of it too:
the settings GRPO reads nothing from, and, from a plain model folder, the model it builds (docs/grpo.md)."""

from __future__ import annotations

from bbuvl.config import PREDICT_MODES, BudgetProblem, Config, DataConfig
from bbuvl.model.checkpoint import is_plain_model_folder


def grpo_ignores(cfg: Config) -> list[BudgetProblem]:
    """The settings of `cfg` that GRPO reads nothing from (each with why, and its keys), so that a run can say so."""
    ignored = []
    if cfg.data.teachers is not None:
        ignored.append(BudgetProblem(f"data.teachers ({cfg.data.teachers}): rollouts are drawn from the photo alone, "
                                     "no teacher shown", ("data.teachers",)))
    if cfg.training.lr.detection > 0:
        ignored.append(BudgetProblem(f"training.lr.detection ({cfg.training.lr.detection:g}): the head is frozen, "
                                     "rewards reach the answer's tokens only", ("training.lr.detection",)))
    if cfg.data.collator != "padded":
        ignored.append(BudgetProblem(f"data.collator ({cfg.data.collator}): rollouts are scored as padded rows",
                                     ("data.collator",)))
    ignored += data_ignored(cfg.data)
    t = cfg.training
    # data.val is scored at the end too, whatever training.eval_steps: it was said to be ignored, then scored
    if given := sorted(cfg.monitor.model_fields_set):
        # The SFT monitors and early stopping read the supervised losses: set, they did nothing here, unsaid
        keys = tuple(f"monitor.{k}" for k in given)
        ignored.append(BudgetProblem(f"{', '.join(keys)}: GRPO runs neither the training-health monitors nor early "
                                     "stopping; watch its rewards (history.json, TensorBoard)", keys))
    if 0 < t.max_steps < t.logging_steps:  # the rewards are what a GRPO run is watched by: none would be shown
        ignored.append(BudgetProblem(f"training.logging_steps ({t.logging_steps}): the run stops at training.max_steps "
                                     f"({t.max_steps}) before its first log, so no reward, KL or answer length is "
                                     "logged", ("training.logging_steps", "training.max_steps")))
    return ignored


def data_ignored(data: DataConfig) -> list[BudgetProblem]:
    """The `data.*` sample-building settings of SFT that rollouts never read, each set away from its default with why."""
    default = DataConfig.model_fields
    why = {
        "padding_side": "rollouts are generated left-padded and scored right-padded, whatever it says",
        "max_length": "a rollout is its photo's prompt and up to grpo.max_new_tokens answer tokens, never cut",
        "oversize": "every photo is resized to the frame, as predict does; none is skipped",
        "sample_cache_mb": "rollouts are drawn afresh each step, nothing encoded is kept",
    }
    return [BudgetProblem(f"data.{k} ({getattr(data, k)}): {reason}", (f"data.{k}",)) for k, reason in why.items()
            if getattr(data, k) != default[k].default]


def plain_start(cfg: Config) -> tuple[Config, list[BudgetProblem]]:
    """The config a GRPO run from a plain model folder (a base model) builds its model with, and a note for each model
    or detection setting that decides the saved checkpoint and that `cfg` leaves to config.py's defaults.

    From a checkpoint GRPO trains the model the checkpoint is, its own settings kept (`kept_from_checkpoint`); from a
    plain folder the model is built from `cfg`, whose defaults are no pretrained model's (configs/base.yaml's are):
    vision positions on, which `bbuvl model export` refuses (docs/serving.md, "Training portable"), and a detection
    head, which GRPO never trains. So the head is left out unless `cfg` names one (or a mode that reads it), and
    each default said."""
    start, notes = cfg.model_copy(deep=True), []
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


def start_notes(cfg: Config) -> list[BudgetProblem]:
    """What a GRPO run's start says of `cfg` before any weights load: each setting it ignores (`grpo_ignores`, said as
    such) and, from a plain model folder here, each default it builds the model with (`plain_start`)."""
    notes = [BudgetProblem(f"training.method grpo ignores {n}", n.keys) for n in grpo_ignores(cfg)]
    return notes + (plain_start(cfg)[1] if is_plain_model_folder(cfg.model.path) else [])
