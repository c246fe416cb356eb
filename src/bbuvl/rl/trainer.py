"""GRPO on the project's trainer: `bbuvl train CONFIG` with `training.method: grpo`.

`GrpoTrainer` is `BBUTrainer` (HF Trainer: accumulation, accelerate's DDP and DeepSpeed, checkpoints, exact
resume, TensorBoard) with two methods of its own. `get_batch_samples` turns each optimizer step's photos into
scored rollouts (rl/rollouts.py) and counts what the step's loss is divided by; `compute_loss` is the GRPO
objective (rl/objective.py) on one micro-batch of them. Why not TRL's `GRPOTrainer`: docs/grpo.md.

What trains is what writes the answer (the VLM, or with LoRA its adapters, and the vision positions); the detection
head is frozen and saved as it came, so `head` and `name` modes keep working on a GRPO checkpoint. The KL term's
reference is a frozen copy of the start (`frozen_start`).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from pydantic import ValidationError
from torch import nn
from transformers import set_seed
from transformers.trainer_callback import PrinterCallback

from bbuvl.config import Config, ConfigError, GrpoConfig, InferenceConfig, run_notes
from bbuvl.data.labels import Hierarchy
from bbuvl.data.layout import data_labels
from bbuvl.data.scale import TrainingScale
from bbuvl.data.families import IMAGE_TOKEN
from bbuvl.data.text import label_key
from bbuvl.encode.collate import Batch, PaddedCollator
from bbuvl.infer.predictor import Predictor, region_batch
from bbuvl.model.checkpoint import (ModelFolder, is_peft, is_plain_model_folder, load_model, load_weights_into,
                                   read_model_folder, save_checkpoint)
from bbuvl.model.lora import apply_lora
from bbuvl.model.vlm import BBUVLModel, core_model
from bbuvl.rl.objective import StepCounts, grpo_loss
from bbuvl.rl.evaluate import reward_sums
from bbuvl.rl.rewards import RewardScorer
from bbuvl.rl.start_notes import checkpoint_start, grpo_ignores, plain_start, quieted, unread_keys
from bbuvl.rl.rollouts import (Augmentation, Photo, PhotoBatch, completion_logprobs, draw_rollouts, free_banned_ids,
                               photos_of)
from bbuvl.train.all_ranks import drawn_notes, every_rank, first_process
from bbuvl.train.callbacks import LogWindow, NonFiniteGuard, RichProgress, RunTensorBoard, Throughput
from bbuvl.train.data_files import DataFiles
from bbuvl.train.dataset import SampleSource, read_training_rows, rows_as_sources
from bbuvl.train.param_groups import freeze_zero_lr_groups, optimizer_groups
from bbuvl.train.run_inputs import mirror_note
from bbuvl.train.run_record import base_gone, carry_run_record
from bbuvl.train.run_dir import (FINAL_DIR, check_not_being_written, check_resumable, check_resumable_from,
                                 looked_from)
from bbuvl.train.trainer import (BBUTrainer, Run, fit, loaded_from, optional_data, resumed_weights, training_arguments,
                                 with_base_located, with_data_located)


class Policy(nn.Module):
    """The model being trained, called as the trainer calls it: log-probabilities of answer tokens.

    A module of its own so that DDP wraps the call that computes them (its gradient hooks follow `forward`).
    """

    accepts_loss_kwargs = True  # HF then leaves the accumulation scaling to us (the step's counts)

    def __init__(self, model: BBUVLModel, temperature: float, banned: list[int] | None = None):
        super().__init__()
        self.model, self.temperature = model, temperature
        self.banned = banned or []  # the ids free rollouts are sampled without (rl/rollouts.py `free_banned_ids`)

    @property
    def config(self) -> Any:
        """The VLM's config (HF Trainer reads it)."""
        return self.model.config

    def forward(self, batch: Batch, allowed: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`(logp [R, T], mask [R, T])` of the rows' answer tokens (rl/rollouts.py `completion_logprobs`)."""
        return completion_logprobs(self.model, batch, self.temperature, allowed, self.banned)


@dataclass
class RolloutBatch:
    """A micro-batch of rollouts: the conversations collated right-padded and their advantages, `[R]` or `[R, T]`."""

    batch: Batch
    advantages: torch.Tensor
    allowed: list | None = None  # per rollout, the grammar's allowed ids at each token (rl/rollouts.py `grammar_steps`)

    def __len__(self) -> int:
        """Rollouts in the micro-batch."""
        return self.advantages.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "RolloutBatch":
        """The micro-batch on `device`."""
        return RolloutBatch(self.batch.to(device, non_blocking), self.advantages.to(device), self.allowed)


def frozen_start(model: BBUVLModel) -> BBUVLModel:
    """A frozen copy of `model` as it is now: the KL term's reference. Under LoRA only what trains is copied (the
    adapters, and the vision positions, which train in full beside them); the weights peft froze are shared with
    `model`, not held twice."""
    # The reference was the model with its adapters switched off, which switched off LoRA alone: the vision
    # positions trained on in it, and the KL was measured against a reference that moved with every step.
    frozen = (t for t in (*model.parameters(), *model.buffers()) if not t.requires_grad) if is_peft(model.vlm) else ()
    return copy.deepcopy(model, {id(t): t for t in frozen}).eval().requires_grad_(False)


def collate_photos(photos: list[Photo]) -> PhotoBatch:
    """The data loader's collator: photos stay photos until the trainer draws their rollouts."""
    return PhotoBatch(list(photos))


METRICS = ("reward", "answer_length", "answer_objects", "cut_answers", "zero_spread_groups", "kl", "clip_fraction")
# What a GRPO run is watched by, on each log's console line beside the loss (eval_reward on an evaluation's); every
# metric and reward term is in history.json and TensorBoard
CONSOLE_METRICS = ("reward", "kl", "answer_length")


class GrpoTrainer(BBUTrainer):
    """BBUTrainer whose micro-batches are rollouts drawn at the start of each optimizer step (module docstring)."""

    def __init__(self, *args: Any, predictor: Predictor, scorer: RewardScorer, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.predictor, self.scorer = predictor, scorer
        self.grpo = self.run.cfg.grpo
        # METRICS and each reward term, each over its own items (rollouts, tokens, groups); the loss is in `loss_window`
        self.window = LogWindow()
        self.add_callback(self.window)
        self.said_no_spread = False
        self.advantage_seen = False  # since the last log: `grpo.advantages: parts` credits terms whose total is even
        self.reference: BBUVLModel | None = None
        if self.grpo.beta > 0:
            # The starting weights: built before HF loads a checkpoint to resume, so a resumed run keeps them.
            self.reference = frozen_start(predictor.model)

    def get_batch_samples(self, epoch_iterator: Iterator, num_batches: int, device: torch.device) -> tuple[list, StepCounts | None]:
        """The step's photos, each answered `group_size` times and scored, as rollout micro-batches; and the
        step's counts over every rank (the loss's denominators)."""
        photos: list[PhotoBatch] = []
        for _ in range(num_batches):
            try:
                photos.append(next(epoch_iterator))
            except StopIteration:
                break
        self._close_step()  # the previous step's loss into the logging window
        if not photos:
            return [], None
        model = self.predictor.model
        was_training = model.training
        model.eval()  # no dropout while sampling; the policy's log-probabilities are recomputed in train mode
        try:
            drawn = [draw_rollouts(self.predictor, p.photos, self.grpo, self.scorer, self.args.seed, self.state.global_step,
                                   self.run.augmentation, self.train_dataset) for p in photos]
        finally:
            model.train(was_training)
        answers = sum(len(r.samples) for r in drawn)
        tokens = sum(int(r.lengths.sum()) for r in drawn)
        totals = torch.tensor([answers, tokens], dtype=torch.float64, device=self.args.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        for r in drawn:
            self.unreadable.update(dict.fromkeys(r.unreadable))  # listed at the end of the run (`train_grpo`)
            self.window.add("reward", float(r.rewards.sum()), r.rewards.numel())
            for k, v in r.terms.items():
                self.window.add(f"reward_{k}", float(v.sum()), v.numel())
            self.window.add("answer_length", float(r.lengths.sum()), r.lengths.numel())
            self.window.add("answer_objects", float(r.objects.sum()), r.objects.numel())
            self.window.add("cut_answers", float(r.cut.sum()), r.cut.numel())
            spread = r.rewards.max(dim=1).values - r.rewards.min(dim=1).values
            self.window.add("zero_spread_groups", float((spread <= 1e-8).sum()), spread.numel())
            self.advantage_seen = self.advantage_seen or bool(r.advantages.abs().gt(0).any())
        counts = StepCounts(int(totals[0]), int(totals[1]), self.grpo.max_new_tokens, self.args.world_size)
        batches = [RolloutBatch(self.run.collator_for_rollouts(r.samples), r.advantages, r.allowed) for r in drawn]
        return batches, counts

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        if not isinstance(num_items_in_batch, StepCounts):
            raise RuntimeError("GrpoTrainer.compute_loss needs the step's StepCounts (from get_batch_samples)")
        inputs = inputs.to(self.args.device)
        logp, mask = model(inputs.batch, inputs.allowed)
        ref = None
        if self.grpo.beta > 0:
            ref = self.reference_logprobs(inputs.batch, inputs.allowed)
        g = self.grpo
        out = grpo_loss(logp, logp.detach(), ref, inputs.advantages, mask, num_items_in_batch, g.loss_type,
                        g.epsilon_low, g.epsilon_high, g.beta)
        tokens = float(out.tokens)
        # Logged from the window as SFT's terms are, not by HF (which counts from the resumed step on); a non-finite
        # loss is in no sum, and the guard skips its step
        if torch.isfinite(out.loss):
            self._add_to_step({"loss": float(out.loss.detach())})
        else:
            self._nonfinite_loss()
        if ref is not None:
            self.window.add("kl", float(out.kl_sum), tokens)
        self.window.add("clip_fraction", float(out.clipped_tokens), tokens)
        self.throughput.samples += len(inputs)
        self.throughput.text_tokens += int(tokens)
        self.throughput.vision_tokens += int(inputs.batch.mm_token_type_ids.sum())
        # The counts cover every rank, but DDP and ZeRO average gradients over ranks: undo that average.
        loss = out.loss * num_items_in_batch.world_size
        return (loss, out) if return_outputs else loss

    @torch.no_grad()
    def reference_logprobs(self, batch: Batch, allowed: list | None = None) -> torch.Tensor:
        """The starting model's log-probabilities of the same tokens `[R, T]`, among the same allowed ids."""
        if self.reference is None:
            raise RuntimeError("GrpoTrainer.reference_logprobs needs a reference model: grpo.beta is 0")
        policy = self.accelerator.unwrap_model(self.model)
        # Copied where the model was then: under DeepSpeed HF leaves the model where it loaded (the CPU) until
        # DeepSpeed places it, so the copy stayed behind while the rollouts' batches are on the GPU. No-op once there.
        self.reference.to(self.args.device)
        return completion_logprobs(self.reference, batch, policy.temperature, allowed, policy.banned)[0]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:  # noqa: D102
        if "loss" in logs:
            logs.update(self.window.means(self.args.device))
            no_spread = logs.get("zero_spread_groups") == 1.0 and not self.advantage_seen
            if no_spread and not self.said_no_spread and self.is_world_process_zero():
                self.said_no_spread = True  # once: zero_spread_groups in every log counts it from here on
                log.warning(no_spread_warning(self.state.global_step, logs, self.grpo))
            self.advantage_seen = False
        super().log(logs, start_time)

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:  # noqa: D102
        # Every rank, before HF saves the state that carries the window (a collective)
        self.window.gather(self.args.device, first=self.args.process_index == 0)
        super()._save_checkpoint(model, trial)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):  # noqa: D102
        raise RuntimeError("GRPO runs have no evaluation loss: measure the held-out reward (rl/evaluate.py)")

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """The validation pass every `training.eval_steps`: the mean reward of greedy answers on `data.val`
        (rl/evaluate.py), logged as `eval_reward` and `eval_reward_<term>`; GRPO has no loss to evaluate."""
        model = self.predictor.model
        was_training = model.training
        model.eval()
        try:
            # Each rank answers its share of the photos and the sums are every rank's: every rank answered every photo,
            # so the pass took as long as in one process, whatever the ranks
            share = (self.run.val_photos or [])[self.args.process_index::self.args.world_size]
            unreadable: list[str] = []
            ranks = every_rank(reward_sums(self.predictor, share, self.scorer, self.args.per_device_eval_batch_size,
                                           unreadable))
            self.unreadable_val.update(dict.fromkeys(unreadable))  # said at the end (cli/train.py)
        finally:
            model.train(was_training)
        scored = sum(n for _, n in ranks)
        sums: dict[str, float] = {}
        for rank_sums, _ in ranks:
            for k, v in rank_sums.items():
                sums[k] = sums.get(k, 0.0) + v
        means = {k: v / max(scored, 1) for k, v in sums.items()}
        metrics = {f"{metric_key_prefix}_{'reward' if k == 'reward' else f'reward_{k}'}": v for k, v in means.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:  # noqa: D102
        if self.args.should_save:
            r = self.run
            folder = Path(output_dir or self.args.output_dir)
            save_checkpoint(self.accelerator.unwrap_model(self.model).model, r.processor, r.cfg, r.contract, r.prompt,
                            folder, scale=r.scale)
            # Its bbuvl.yaml keeps the start's data and model sections (predict reads them), so it carries the run's
            # record, this run's own data, start and reward code by content, for a resume whose run.json is gone.
            carry_run_record(self.args.output_dir, folder)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:  # noqa: D102
        load_weights_into((model or self.model).model, resume_from_checkpoint)


@dataclass
class GrpoRun(Run):
    """A `Run` whose data are photos with their truth; rollouts are collated as the model's batches."""

    predictor: Predictor | None = None
    scorer: RewardScorer | None = None
    val_photos: list[Photo] | None = None  # data.val's, for the validation pass; None without one
    augmentation: Augmentation = Augmentation()  # how the rollouts see the training photos (data.crop, data.mirror)

    def collator_for_rollouts(self, samples: list) -> Batch:
        """Right-padded rows, one rollout each (the policy's forward)."""
        return self.collator(samples)


log = logging.getLogger(__name__)


def no_spread_warning(step: int, logs: dict[str, float], grpo: GrpoConfig) -> str:
    """What a logged window in which every photo's rollouts scored alike means, and what to change: its advantages
    were all 0 (rl/objective.py), so the reward taught nothing in those steps. The token budget is blamed only where
    it ended answers (`cut_answers`); otherwise the rollouts' own answers are said."""
    length, reward = logs.get("answer_length", 0.0), logs.get("reward", 0.0)
    said = (f"step {step}: in the steps logged since the last log, each photo's {grpo.group_size} rollouts all earned "
            f"the same reward (zero_spread_groups 1; mean reward {reward:.4g}): their advantages are 0, so "
            + ("the reward taught nothing (only the KL term, grpo.beta, moved the policy). " if grpo.beta > 0 else
               "the loss and its gradient are 0 and the policy learnt nothing from them. "))
    w = grpo.rewards
    if not (w.user > 0) and reward >= w.detection + w.label + w.format - 1e-6:  # every term is at most 1
        return said + ("Every answer earned the whole reward (photos with no parts answered `[]`, or answered "
                       "exactly): nothing is left to learn on these photos")
    differ = "answers that differ need a higher grpo.temperature or grpo.group_size"
    cut = logs.get("cut_answers", 0.0)
    if cut > 0:
        # free decoding: cut where it stands
        how = "closes every answer as `[]`" if grpo.constrained else "cuts every answer before it parses"
        share = "" if cut >= 1 else f", and it ended {cut:.0%} of them"
        return said + (f"Answers averaged {length:.1f} tokens of grpo.max_new_tokens {grpo.max_new_tokens}{share}: a "
                       f"budget too short for one object {how} (raise it); otherwise {differ}")
    # Every answer wrote its own end: a longer budget changes none of them (objects that earn nothing on photos with
    # no parts, a `[]` on photos with parts, or one same answer sampled G times).
    objects = logs.get("answer_objects", 0.0)
    wrote = "`[]`, no object" if objects == 0 else f"{objects:.3g} object(s) on average"
    terms = ", ".join(f"{k} {v:.4g}" for k, v in sorted(logs.items()) if k.startswith("reward_"))
    return said + (f"No answer was ended by the token budget (grpo.max_new_tokens {grpo.max_new_tokens}): each wrote "
                   f"its own end after {length:.1f} tokens on average and {wrote}, and every photo's answers earned "
                   f"alike ({terms or 'no reward term'}); {differ}")


def run_inference(cfg: Config, start: Config) -> InferenceConfig:
    """The `inference` section a GRPO run from checkpoint config `start` validates with and saves: the keys `cfg` names
    over the checkpoint's (a config that names none keeps how the checkpoint predicted)."""
    named = {k: getattr(cfg.inference, k) for k in cfg.inference.model_fields_set}
    try:
        return InferenceConfig.model_validate({**start.inference.model_dump(), **named})
    except ValidationError as e:
        problems = "; ".join(err["msg"] for err in e.errors())
        raise ConfigError(f"the config's inference keys ({', '.join(f'inference.{k}' for k in sorted(named))}) over "
                          f"those of the checkpoint {cfg.model.path}: {problems}") from None


def unwritable_labels(sources: list[SampleSource], vocabulary: list[str], hierarchy: Hierarchy) -> str | None:
    """How many of `sources`' objects carry a label outside `vocabulary` (the labels the answer grammar writes), with
    the first one and its file and line; None when every label is one of them, however typed."""
    def key(label: str) -> str:
        return label_key(hierarchy.canonical(label) or label)

    known = {key(v) for v in vocabulary}
    missing = [(o.desc, s.student) for s in sources for o in s.student.record.objects if key(o.desc) not in known]
    if not missing:
        return None
    label, where = missing[0]
    total = sum(len(s.student.record.objects) for s in sources)
    kinds = len({key(d) for d, _ in missing})
    line = f" ({where.dataset_path}:{where.line})" if where.line is not None else ""
    return f"{len(missing)} of {total} objects carry {kinds} label(s) not among the checkpoint's, e.g. {label!r}{line}"


@dataclass
class GrpoInputs:
    """What a GRPO run reads before its model loads: read and checked before `--overwrite` clears the previous run,
    so that a typo in data.val or a bad line does not cost it (train/run_inputs.py does the same for SFT)."""

    sources: list[SampleSource]
    folder: ModelFolder  # the starting checkpoint (its own prompt and frame) or a plain model folder
    val_photos: list[Photo] | None  # data.val's, for the validation pass; None without one
    scorer: RewardScorer
    inference: InferenceConfig  # what the run's checkpoints predict with, its validation pass too (`run_inference`)


def read_grpo_inputs(cfg: Config, files: DataFiles | None = None) -> GrpoInputs:
    """The photos, the starting model's folder and the rewards of `cfg`'s GRPO run, each data file read through
    `files`; fails on a bad reward function, data file or frame setting, before any weights load."""
    hierarchy = Hierarchy.load(cfg.data.hierarchy)
    sources = rows_as_sources(read_training_rows(cfg.data.train, files=files), cfg.data.train)  # lines: for messages
    # The rollouts see mirrored photos as SFT's students do (train/run_inputs.py `mirror_note`)
    if (note := mirror_note(cfg, (o.desc for s in sources for o in s.student.record.objects), hierarchy)) \
            and first_process():
        log.warning("%s", note)
    if is_plain_model_folder(cfg.model.path):
        labels = data_labels((cfg.data.train, cfg.data.val), hierarchy)
        start, notes = plain_start(cfg)  # config.py's defaults are no pretrained model's: each said, the head left out
        for note in notes:
            if first_process():  # every process would say them
                log.warning("%s", note)
        folder = read_model_folder(cfg.model.path, labels=labels, lang=cfg.data.lang, cfg=start)
    else:
        try:
            folder = read_model_folder(cfg.model.path)
        except (OSError, ValueError) as e:
            # A run's --overwrite removes its final/ before it saves the new one: not there yet, rather than none.
            check_not_being_written({"model.path": cfg.model.path})
            # The reader names the folder, not the key, nor (when there is none) what GRPO can start from.
            hint = (" (GRPO starts from a local folder: a checkpoint `bbuvl train` wrote, or a base model's folder; "
                    "docs/grpo.md)") if isinstance(e, OSError) else ""
            raise ValueError(f"model.path {e}{hint}") from None
        # What `bbuvl config check` says too: its frame refused (BudgetError), the keys it keeps, a LoRA one's adapters
        for note in checkpoint_start(cfg, folder):
            if first_process():  # every process would say them
                log.warning("%s", note)
    val = optional_data(cfg, "val")
    val_sources = rows_as_sources(read_training_rows(val, files=files), val) if val else []
    val_photos = photos_of(val_sources) if val else None
    if cfg.grpo.rewards.label > 0 and not is_plain_model_folder(cfg.model.path):  # a plain folder: the data's labels
        for key, path, data in (("data.train", cfg.data.train, sources), ("data.val", val, val_sources)):
            if (problem := unwritable_labels(data, folder.prompt.labels, hierarchy)) and first_process():
                # The answer grammar writes the checkpoint's labels only: no rollout can name these (rl/rewards.py).
                log.warning("%s %s: %s: the checkpoint %s answers with its %d labels only (prompt.json), so these "
                            "objects earn the label reward only for the levels their label shares with one of those; "
                            "to learn their names, fine-tune on this data first (training.method sft), or leave the "
                            "label reward out (grpo.rewards.label: 0)",
                            key, path, problem, cfg.model.path, len(folder.prompt.labels))
    scorer = RewardScorer.from_config(cfg.grpo.rewards, hierarchy, folder.prompt.labels)
    # The first photo, and the first with no parts: a function dividing by the true objects fails only there, which
    # the run would reach at whatever step drew it, or at the validation pass (rl/rewards.py `check_user`).
    for key, data in (("data.train", sources), ("data.val", val_sources)):
        photos = photos_of(data)
        empty = next((i for i, p in enumerate(photos) if not p.truth), None)
        for i in dict.fromkeys(([0] if key == "data.train" and photos else []) + ([empty] if empty is not None else [])):
            s = data[i].student
            at = f"{s.dataset_path}:{s.line}" if s.line is not None else s.dataset_path
            scorer.check_user(photos[i].truth, f"{'a photo with no parts' if not photos[i].truth else 'a photo'} "
                                               f"of {key} ({at})")
    inference = cfg.inference if not folder.trained else run_inference(cfg, folder.cfg)
    return GrpoInputs(sources, folder, val_photos, scorer, inference)


def build_grpo_run(cfg: Config, inputs: GrpoInputs | None = None) -> GrpoRun:
    """Load the starting model (an SFT checkpoint with its own prompt and frame, or a base model) with `inputs`, its
    photos and rewards (read here when not given: `read_grpo_inputs`)."""
    set_seed(cfg.training.seed)
    if first_process():  # every process would say them
        for setting in grpo_ignores(cfg):
            log.warning("training.method grpo ignores %s", setting)
        # what SFT's start and `bbuvl config check` say too (a LoRA rate that trains nothing)
        for note in run_notes(cfg):
            log.warning("%s", note)
    inputs = inputs or read_grpo_inputs(cfg)
    # The attention and the quantisation this config asks for, refused where they cannot run, as SFT's are
    bits = cfg.model.lora.bits if cfg.model.lora.enabled else 16
    model, processor, run_cfg, contract, prompt = load_model(inputs.folder, dtype=cfg.model.dtype,
                                                             attn_implementation=cfg.model.attn_implementation,
                                                             load_in_bits=bits,
                                                             train_adapters=cfg.model.lora.enabled)
    saved = grpo_saved_config(cfg, run_cfg, inputs.inference, plain=not inputs.folder.trained)
    if cfg.model.lora.enabled and not is_peft(model.vlm):
        model.vlm = apply_lora(model.vlm, cfg.model.lora)
        # adapters on the weights we started from, found from any folder
        saved.model.lora, saved.model.path = cfg.model.lora, with_base_located(cfg).model.path
    # Rewards reach the answer's tokens only: the head and the coordinate read-out (read by SFT's coordinate regression
    # alone) get no gradient. Left trainable, the read-out was a parameter the loss never used, which DDP refuses: a run
    # from a checkpoint trained with loss.coordinate_regression stopped at its second step under torchrun.
    for module in (model.detection_head, model.coordinate_readout):
        if module is not None:
            module.requires_grad_(False)
    if cfg.training.gradient_checkpointing:
        core_model(model.vlm).activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    freeze_zero_lr_groups(model, cfg.training.lr)
    optimizer_groups(model, cfg.training.lr, cfg.training.weight_decay)
    model.train()
    predictor = Predictor(model, processor, contract, prompt, saved)
    tok = processor.tokenizer
    right = PaddedCollator(tok.pad_token_id, tok.convert_tokens_to_ids(IMAGE_TOKEN), padding_side="right")
    crop = cfg.data.crop
    scale = TrainingScale.of((s.student.record for s in inputs.sources), contract, crop.p, (crop.min_side, crop.max_side))
    return GrpoRun(saved, model, processor, contract, prompt, scale, photos_of(inputs.sources), None, right,
                   predictor=predictor, scorer=inputs.scorer, val_photos=inputs.val_photos,
                   augmentation=Augmentation(crop, cfg.data.mirror))


# The sections of a GRPO checkpoint's bbuvl.yaml that come from the run's own config over a checkpoint's
# (`grpo_saved_config`); from a plain model folder the whole of it does.
OWN_SECTIONS = ("training.", "grpo.", "inference.")


def grpo_saved_config(cfg: Config, start: Config, inference: InferenceConfig, plain: bool = False) -> Config:
    """The config a GRPO run's checkpoints carry: the starting model's `start` (its model, prompt language, head),
    with what this run trained with from `cfg` (training, grpo, data files, crops and mirrors, attention, dtype) and
    predicts with (`inference`), the data files recorded where they are. What it takes from `cfg` (all of it from a
    plain model folder, `plain`) holds each key GRPO reads nothing from at its quiet value (rl/start_notes.py
    `quieted`)."""
    saved = start.model_copy(update={"training": cfg.training, "grpo": cfg.grpo, "inference": inference}, deep=True)
    data = saved.data
    data.train, data.val, data.hierarchy = cfg.data.train, optional_data(cfg, "val"), cfg.data.hierarchy
    # The rollouts see the photos as this config's crops and mirrors show them (rl/rollouts.py `shown`)
    data.crop, data.mirror = cfg.data.crop.model_copy(), cfg.data.mirror
    saved.model.attn_implementation, saved.model.dtype = cfg.model.attn_implementation, cfg.model.dtype
    # It recorded `training.detection_freeze_epochs: 2` and the head's rate as if they had held the head back or trained
    # it, and from a plain folder the teachers it never showed; the start says each ignored (docs/grpo.md).
    return with_data_located(quieted(saved, unread_keys(plain, ("",) if plain else OWN_SECTIONS)))


def make_grpo_trainer(run: GrpoRun, progress: bool = True, callbacks: list | None = None) -> GrpoTrainer:
    """A ready-to-train GrpoTrainer for a built run."""
    cfg = run.cfg
    free = not cfg.grpo.constrained or not run.prompt.labels  # no grammar: rl/rollouts.py samples without these
    policy = Policy(run.model, cfg.grpo.temperature, free_banned_ids(run.processor.tokenizer) if free else None)
    throughput = Throughput()
    guard = NonFiniteGuard(policy, cfg.training.max_consecutive_nan)
    trainer = GrpoTrainer(
        model=policy,
        args=training_arguments(cfg, has_eval=run.val_photos is not None),
        train_dataset=run.train_dataset,
        eval_dataset=run.val_photos,  # only so HF schedules the pass: `evaluate` reads the photos itself
        data_collator=collate_photos,
        callbacks=[RunTensorBoard(Path(cfg.training.output_dir) / "tb"), guard,
                   RichProgress(throughput, progress, CONSOLE_METRICS), *(callbacks or [])],
        run=run, throughput=throughput, guard=guard, predictor=run.predictor, scorer=run.scorer,
    )
    trainer.remove_callback(PrinterCallback)
    place_predictor(run.predictor, str(trainer.args.device))
    return trainer


def place_predictor(predictor: Predictor, device: str) -> None:
    """Point the run's predictor at `device`, with the tiled photo's regions a pass reads there (`region_batch`)."""
    # The predictor is built before the trainer places the model: its region batch, chosen then for the CPU (64
    # regions a pass), went on cutting a tiled validation photo's regions 64 at a time on the GPU.
    predictor.device = device
    predictor.region_batch = region_batch(device, predictor.cfg.inference.batch_size)


def train_grpo(cfg: Config, resume: bool | str = False, progress: bool = True, callbacks: list | None = None,
               overwrite: bool = False, accept_code: bool = False) -> dict[str, Any]:
    """Run GRPO; returns the final checkpoint folder and the logged history (as `train.trainer.train` does).
    `accept_code`: a resume goes on with grpo.rewards.user_function's code edited since, recording it (docs/grpo.md)."""
    if cfg.training.method != "grpo":
        raise ValueError(f"train_grpo runs training.method: grpo, the config says {cfg.training.method}")
    made: list[GrpoTrainer] = []
    files = DataFiles()  # the checks before the folder is claimed and the run's photos read each file once
    inputs: list[GrpoInputs] = []

    def prepare() -> None:
        # A resume whose starting checkpoint is gone: each checkpoint holds every weight, the prompt and the frame
        # the start had, but not the start's own weights, which the KL term is measured against.
        if resume and cfg.grpo.beta > 0 and base_gone(cfg, resume):
            raise ValueError(f"model.path {cfg.model.path}: no such folder{looked_from(cfg.model.path)}, and this run's "
                             f"KL term (grpo.beta {cfg.grpo.beta:g}) is measured against the weights it started from, "
                             "which no checkpoint of the run holds: put the starting checkpoint back there, or set "
                             "model.path to where it is now")
        weights = resumed_weights(cfg, resume)  # a start gone with no checkpoint to stand in for it: named there
        # Before the shared checks (train/trainer.py `fit`), which name the cut saves but not what to do.
        if resume is True:
            check_resumable(cfg.training.output_dir)
        elif resume:
            check_resumable_from(resume)
        inputs.append(read_grpo_inputs(cfg if weights is None else loaded_from(cfg, weights), files))

    def make() -> GrpoTrainer:
        made.append(make_grpo_trainer(build_grpo_run(cfg, inputs[0]), progress, callbacks))
        return made[0]

    trainer = fit(cfg, make, resume, overwrite, files, prepare, accept_code)
    unreadable = drawn_notes(list(trainer.unreadable), [], 0)[0]  # every rank's, each once
    unreadable_val = drawn_notes(list(trainer.unreadable_val), [], 0)[0]
    return {"final": str(Path(cfg.training.output_dir) / FINAL_DIR), "history": trainer.state.log_history,
            "nan_skipped": trainer.guard.skipped, "unreadable": unreadable, "unreadable_val": unreadable_val}
