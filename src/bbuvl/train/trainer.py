"""Fine-tuning on HF Trainer: one config in, a checkpoint folder out.

HF Trainer provides the loop (accumulation, bf16, checkpointing, resume, TensorBoard, accelerate /
DeepSpeed); this module supplies what is ours: the five LR groups, the multi-term loss normalised over the
effective batch and logged term by term (docs/training_loss_scale.md), the non-finite guard with batch dumps,
and checkpoints that carry everything inference needs.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # a dependency of accelerate
import torch
from transformers import Trainer, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from bbuvl.atomic import NO_ROOM, WriteFailed, failed_write_errno, remove_path, write_text_atomic
from bbuvl.config import Config
from bbuvl.data.coords import CoordinateContract
from bbuvl.data.faults import Faults
from bbuvl.data.scale import TrainingScale
from bbuvl.data.families import IMAGE_TOKEN
from bbuvl.data.text import show_text
from bbuvl.encode.chat import ChatEncoder
from bbuvl.encode.collate import Batch, PackedCollator, PaddedCollator
from bbuvl.encode.loss_terms import LossTerms
from bbuvl.model.checkpoint import (PROMPT_FILE, CheckpointError, Prompt, adapters_base, check_lora_base, finish_swap,
                                    load_weights_into, reuse_extra_modules, save_checkpoint, swap_in, swap_names)
from bbuvl.model.loading import load_model_and_processor
from bbuvl.model.lora import apply_lora
from bbuvl.model.loss_scale import LossDenominators
from bbuvl.model.packed_attention import use_packed_sdpa
from bbuvl.model.vlm import BBUVLModel, core_model
from bbuvl.paths import real_path
from bbuvl.train.all_ranks import drawn_notes, first_process, kernel_notes_once
from bbuvl.train.caption_budget import long_caption_problem
from bbuvl.train.caption_refit import CaptionRefitCallback, Photo, training_photos
from bbuvl.train.callbacks import (NONFINITE, CheckpointRotation, EpochCallback, LossSum, LossWindow, NonFiniteGuard,
                                   RichProgress, RunTensorBoard, Throughput, TrainingDiverged)
from bbuvl.train.data_files import DataFiles
from bbuvl.train.dataset import ConversationDataset
from bbuvl.train.monitors import GradientMonitor, closing_event_writers, health_log, health_summary, training_health
from bbuvl.train.eval_terms import EvalTerms
from bbuvl.train.held_out import check_held_out
from bbuvl.train.oversize import skipped_counts, skipped_note
from bbuvl.train.param_groups import assign_groups, freeze_zero_lr_groups, fused_on_cpu, optimizer_groups
from bbuvl.train.run_dir import (FINAL_DIR, RunDirError, check_output_dir, check_resume_into, check_run_inputs,
                                 checkpoint_incomplete, check_resumable_from, clear_previous_run, holding_run, left_as_found,
                                 latest_complete_checkpoint, looked_from, nothing_to_resume)
from bbuvl.train.resume_records import (HISTORY_FILE, abandoned_checkpoints, check_cut_back, check_training_state,
                                        cut_back, global_step)
from bbuvl.train.run_inputs import RunInputs, check_inputs, check_start, optional_data, precision_problem, read_run_inputs  # noqa: F401 - rl's too
from bbuvl.train.run_record import (RUN_RECORD, ResumeMismatch, base_gone, carry_run_record, check_resume,
                                    record_accepted_code, record_resumed_software, software_before, software_changes,
                                    processes, write_run_record)
from bbuvl.train.sample_cache import SampleCache
from bbuvl.train.stand_ins import StandInSampler, stand_ins
from bbuvl.train.weight_average import WeightAverage

log = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything a training run is made of."""

    cfg: Config
    model: BBUVLModel
    processor: Any
    contract: CoordinateContract
    prompt: Prompt
    scale: TrainingScale  # how the training photos were shown, saved with every checkpoint (tiles: auto)
    train_dataset: ConversationDataset
    eval_dataset: ConversationDataset | None
    collator: PaddedCollator | PackedCollator
    refit_photos: list[Photo] = field(default_factory=list)  # `detection.caption_refit.photos`, read before training


def check_precision(cfg: Config) -> None:
    """Refuse `training.bf16` where nothing computes in it, before the model loads: transformers refuses it only once
    the trainer is built, minutes later, and names no key of ours."""
    if (why := precision_problem(cfg)) is not None:
        raise ValueError(why)


def check_distributed(args: TrainingArguments) -> None:
    """Refuse a run launched as several processes that transformers trains one by one: on a machine without a GPU and
    with `training.use_cpu` false, accelerate gives each process a whole run of its own, and every one then trains
    on all the data and writes training.output_dir over the others."""
    from transformers.training_args import ParallelMode

    ranks = processes()
    if ranks > 1 and args.parallel_mode in (ParallelMode.NOT_PARALLEL, ParallelMode.NOT_DISTRIBUTED):
        raise ValueError(f"launched as {ranks} processes (WORLD_SIZE {ranks}), but transformers trains each one alone "
                         f"here (device {args.device}, training.use_cpu {str(args.use_cpu).lower()}): each would "
                         "train on all the data and write training.output_dir over the others. On a machine without "
                         "a GPU set training.use_cpu=true to train them as one run on the CPU, or launch one process")


def with_base_located(cfg: Config) -> Config:
    """`cfg` with a LoRA run's local base folder written as an absolute path: its checkpoints load their base weights
    from `model.path`, and a relative one would be looked for under whatever folder reads them (or on the hub)."""
    base = Path(cfg.model.path)
    if not cfg.model.lora.enabled or base.is_absolute() or not base.is_dir():
        return cfg
    cfg = cfg.model_copy(deep=True)
    cfg.model.path = str(base.absolute())
    return cfg


def adapters_base_of(cfg: Config) -> str:
    """The base model a LoRA run's adapters load over: model.path, or where model.path is a LoRA checkpoint whose
    adapters a GRPO run trains on (docs/grpo.md, "From LoRA"), that checkpoint's own base."""
    # The resume of such a run compared its checkpoints' adapters with the LoRA checkpoint's folder as if it were
    # their base, and refused every one as trained on another base model.
    return adapters_base(cfg.model.path) or with_base_located(cfg).model.path


def with_data_located(cfg: Config) -> Config:
    """`cfg` with each data file that is there (data.train, val, teachers, hierarchy, the caption refit's photos)
    written where it really is, links followed: every checkpoint carries this config, and predict, serve, eval and
    fewshot read a relative one from the folder they run in, where another dataset's `data/teachers.jsonl` was
    read without a word. One not there stays as typed (an optional default the run did without)."""
    cfg = cfg.model_copy(deep=True)
    data, refit = cfg.data, cfg.detection.caption_refit
    data.train = _located(data.train)
    data.val, data.teachers, data.hierarchy = _located(data.val), _located(data.teachers), _located(data.hierarchy)
    refit.photos = _located(refit.photos)
    return cfg


def loaded_from(cfg: Config, weights: str | Path) -> Config:
    """`cfg` with its model read from the folder `weights` (its family and frame found there), not model.path."""
    cfg = cfg.model_copy(deep=True)
    cfg.model.path = str(weights)
    return cfg


def _located(path: str | None) -> str | None:
    """`path` absolute with its links followed when something is there, else as it is."""
    return str(real_path(path)) if path is not None and os.path.lexists(path) else path


def resumed_weights(cfg: Config, resume: bool | str) -> Path | None:
    """The checkpoint a resume builds its model from when model.path, a full fine-tune's local base folder, is gone:
    it holds every weight, the model's config and its processor, and the resume loads its weights over the base's
    anyway. None: model.path is there, or the run starts anew. RunDirError when no complete checkpoint can stand in
    for it; a LoRA run's checkpoints hold only adapters: ValueError naming the base they need."""
    path = cfg.model.path
    if not resume or not base_gone(cfg, resume):
        return None
    if cfg.model.lora.enabled:
        raise ValueError(f"model.path {path}: no such folder{looked_from(path)}, and this LoRA run's checkpoints hold "
                         "only its adapters, which resuming applies to that base model: put the base back there, or "
                         "set model.path to where it is now")
    if isinstance(resume, str):
        why = checkpoint_incomplete(Path(resume)) if Path(resume).is_dir() else "no such folder"
        found, where = (None if why else Path(resume)), f"--resume-from {resume}: {why}"
    else:
        out = Path(cfg.training.output_dir)
        found, skipped = latest_complete_checkpoint(out)
        where = (f"training.output_dir {out}: " + ("; ".join(f"{p.name}: {r}" for p, r in skipped)
                                                   or "no checkpoint-N folder") if out.is_dir()
                 else f"training.output_dir {out} does not exist{looked_from(out)}")
    if found is None:  # a save killed half-way left none: the base's absence alone was named, and not why
        raise RunDirError(f"model.path {path}: no such folder{looked_from(path)}, and no complete checkpoint stands in "
                          f"for it ({where}); put the base back there, or set model.path to where it is now")
    if first_process():
        log.warning("model.path %s is gone%s: this full fine-tune resumes with the model, weights and processor of %s",
                    path, looked_from(path), found)
    return found


def build_run(cfg: Config, files: DataFiles | None = None, inputs: RunInputs | None = None,
              weights: str | Path | None = None) -> Run:
    """Load the model and data a config describes and check parameter groups (fails fast, before any step): `inputs`
    when read already (train/run_inputs.py), else read now, through `files` when given (train/data_files.py);
    `weights`, the folder the model is loaded from when not model.path (`resumed_weights`)."""
    set_seed(cfg.training.seed)  # the head's initial weights must not depend on what ran before in this process
    cfg = with_data_located(with_base_located(cfg))
    inputs = inputs or read_run_inputs(cfg if weights is None else loaded_from(cfg, weights), files)
    family, contract, prompt, labels = inputs.family, inputs.contract, inputs.prompt, inputs.labels

    vlm, processor = load_model_and_processor(str(weights or cfg.model.path), dtype=cfg.model.dtype,
                                              attn_implementation=cfg.model.attn_implementation,
                                              frame=contract,
                                              load_in_bits=cfg.model.lora.bits if cfg.model.lora.enabled else 16)
    loaded = vlm.config.model_type
    if loaded != family.model_type:
        raise ValueError(f"model.family is {family.model_type} but {cfg.model.path} holds a {loaded} model; "
                         "set model.family: auto or the checkpoint's family")
    if cfg.data.collator == "packed":
        use_packed_sdpa(vlm)  # SDPA per packed sample instead of a dense L x L mask (model/packed_attention.py)
    if cfg.model.lora.enabled:
        vlm = apply_lora(vlm, cfg.model.lora)
    if cfg.training.gradient_checkpointing:
        core_model(vlm).activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if cfg.detection.enabled and (why := long_caption_problem(inputs.train + (inputs.val or []), processor.tokenizer,
                                                              cfg.detection.caption_max_tokens)):
        raise ValueError(why)
    model = BBUVLModel.build(vlm, cfg, processor.tokenizer)
    if cfg.detection.enabled and cfg.loss.fault_weight != 1:
        model.fault_captions = fault_captions(labels, inputs.faults, processor.tokenizer,
                                              cfg.data.hierarchy)
    if cfg.model.reuse_modules and weights is None:  # a resume loads the checkpoint's own modules over them
        reused = reuse_extra_modules(model, cfg.model.path)
        if first_process():  # every process builds the same model: one says so
            for name, (copied, total) in reused.items():
                log.info("model.reuse_modules: %d of %d tensors from %s", copied, total, Path(cfg.model.path) / name)
            if not reused:  # a plain model folder: the run is built fresh, as without the option
                log.warning("model.reuse_modules: %s holds no head or vision positions to reuse; they are built new",
                            cfg.model.path)
    freeze_zero_lr_groups(model, cfg.training.lr)
    optimizer_groups(model, cfg.training.lr, cfg.training.weight_decay)  # raises naming a parameter in no group, or nothing to train

    encoder = ChatEncoder(processor, prompt.system, cfg.data.lang, family.assistant_prefix)
    common = dict(oversize=cfg.data.oversize, seed=cfg.training.seed, max_length=cfg.data.max_length,
                  mark_coordinates=cfg.loss.coordinate_regression > 0 or cfg.loss.grounding_attention > 0)
    train_ds = ConversationDataset(inputs.train, encoder, contract, inputs.pool,
                                   cfg.data.teacher_ratio, cfg.data.num_teachers, crop=cfg.data.crop,
                                   mirror=cfg.data.mirror, cache_mb=cfg.data.sample_cache_mb, **common)
    longer = train_ds.answers_longer_than(cfg.inference.max_new_tokens)
    if longer and first_process():  # every process measures the same answers: one says so
        log.warning("%d of %d training answers (the longest %d tokens) are longer than inference.max_new_tokens (%d): "
                    "generate mode will cut answers like them short (predict marks them \"cut\"); raise "
                    "inference.max_new_tokens if photos like them are to be predicted in generate mode", longer,
                    len(train_ds.answer_tokens), max(train_ds.answer_tokens), cfg.inference.max_new_tokens)
    # Once a machine, not once a run: the memory the plan is checked against is each machine's own.
    if train_ds.cache is not None and int(os.environ.get("LOCAL_RANK", "0")) == 0:
        plan, fits = cache_plan(train_ds, cfg.data.sample_cache_mb, int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
                                psutil.virtual_memory().available / 2**20)
        (log.info if fits else log.warning)("%s", plan)
    eval_ds = None
    if inputs.val is not None:
        eval_ds = ConversationDataset(inputs.val, encoder, contract, inputs.pool,
                                      cfg.data.teacher_ratio if cfg.data.val_teachers else 0.0, cfg.data.num_teachers,
                                      in_place="evaluated", **common)
    if first_process():  # every process leaves out the same photos: one says so
        for key, ds, skipped in (("data.train", train_ds, train_ds.skipped), ("data.teachers", train_ds, train_ds.pool_skipped),
                                 ("data.val", eval_ds, eval_ds.skipped if eval_ds is not None else [])):
            if note := skipped_note(key, skipped, contract):
                log.warning("%s", note)
    tok = processor.tokenizer
    ids = dict(pad_token_id=tok.pad_token_id, image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
               max_vision_tokens_per_batch=cfg.model.max_vision_tokens_per_batch)
    collator = (PackedCollator(**ids, max_tokens=cfg.data.pack_max_tokens) if cfg.data.collator == "packed"
                else PaddedCollator(**ids, padding_side=cfg.data.padding_side))
    crop = cfg.data.crop
    scale = TrainingScale.of((s.student.record for s in train_ds.sources), contract, crop.p, (crop.min_side, crop.max_side))
    return Run(cfg, model, processor, contract, prompt, scale, train_ds, eval_ds, collator, inputs.refit_photos)


def fault_captions(labels: list[str], faults: Faults, tokenizer: Any, hierarchy: str | None) -> frozenset[tuple[int, ...]]:
    """The token ids of the training labels that are faults, as the head's captions spell them (`loss.fault_weight`);
    a warning when none is, since the option then changes nothing (a dataset of shapes, or photos without faults)."""
    found = frozenset(tuple(tokenizer.encode(label, add_special_tokens=False)) for label in labels if faults.is_fault(label))
    if not found and first_process():  # every process reads the same labels: one says so
        log.warning("loss.fault_weight is set but no training label is a fault in the hierarchy file (%s): every object "
                    "weighs the same; mark the faulty states there to weigh them (docs/faults.md)",
                    hierarchy or "the shipped default")
    return found


def _finite_float(t: torch.Tensor) -> float:
    return float(t.detach().float().item())


class BBUTrainer(Trainer):
    """HF Trainer with our optimizer groups, effective-batch loss scaling, multi-term logging, non-finite dumps
    and checkpoint layout.

    Each optimizer step's micro-batches are counted before the first forward (`get_batch_samples`); every loss
    term is divided by those counts, summed over all ranks (docs/training_loss_scale.md).
    """

    def __init__(self, *args: Any, run: Run, throughput: Throughput, guard: NonFiniteGuard, **kwargs: Any):
        # Before Trainer makes training.output_dir (docs/resume.md, "train: a refused start"): when every process of
        # a refused launch made it, the folder above it that the first one's lock needed was left behind now and then
        check_distributed(kwargs["args"])
        super().__init__(*args, **kwargs)
        self.run, self.throughput, self.guard = run, throughput, guard
        self._denominators: LossDenominators | None = None  # of the optimizer step being taken
        self._step_parts: dict[str, float] = {}  # this rank's share of each term of that step
        self._step_finite = True
        self._open_step = 0  # the optimizer step whose terms `_step_parts` holds, until `_close_step` (0: none)
        self._eval_terms = EvalTerms()
        self._schedule_samples = 0  # HF's count of the samples of the whole schedule, given at the end of training
        self.budget_dropped = 0  # samples the collator left out of training batches (encode/collate.py, `Batch.dropped`)
        # "file:line: why" of each photo that could not be read when drawn, another sample trained in its place
        # (train/dataset.py); a dict, for each once in the order met
        self.unreadable: dict[str, None] = {}
        self.unreadable_val: dict[str, None] = {}  # the same of data.val's, another photo evaluated in its place
        # "file:line" of each photo whose answer a crop or mirror made too long for data.max_length, cut when drawn
        self.cut_in_draws: dict[str, None] = {}
        # What the run writes into its folder once a resumed checkpoint is loaded (`fit`): called after the weights,
        # the optimizer and the schedule are read, where a checkpoint that does not fit is refused, so a refused resume
        # changes nothing in the folder.
        self.on_resumed: Callable[[], None] | None = None
        decay = run.cfg.training.ema_decay
        # Before any callback added later (the caption refit): they read the averaged weights (train/weight_average.py).
        self.average = WeightAverage(run.model, decay) if decay > 0 else None
        if self.average is not None:
            self.add_callback(self.average)
        # training.save_total_limit, for GRPO's trainer too: HF's rotation is off (`training_arguments`)
        self.rotation = CheckpointRotation(run.cfg.training.save_total_limit)
        self.add_callback(self.rotation)
        self.loss_sum = LossSum()
        self.add_callback(self.loss_sum)
        self.loss_window = LossWindow()  # the closed steps since the last log (GRPO's loss too, its metrics apart)
        self.add_callback(self.loss_window)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:  # noqa: D102
        if self.optimizer is None:
            groups = optimizer_groups(self.model, self.run.cfg.training.lr, self.args.weight_decay)
            self.optimizer = torch.optim.AdamW(groups, betas=(self.args.adam_beta1, self.args.adam_beta2),
                                               eps=self.args.adam_epsilon, fused=fused_on_cpu(groups))
        return self.optimizer

    def _get_train_sampler(self, train_dataset=None):  # noqa: D102
        # Over several processes an epoch that does not fill its last turn ends in stand-ins, not in its first photos
        # again (train/stand_ins.py); one that fills it keeps accelerate's own sampler, as every one-process run does.
        dataset = self.train_dataset if train_dataset is None else train_dataset
        pad = stand_ins(len(dataset), self.args.world_size, self._train_batch_size)
        if not pad or not isinstance(dataset, ConversationDataset):  # GRPO's photos are a list (rl/trainer.py)
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return StandInSampler(len(dataset), pad, seed)

    def get_train_dataloader(self):  # noqa: D102
        loader = super().get_train_dataloader()
        # accelerate's shard of the batches holds the sampler one level down
        shard = getattr(loader, "batch_sampler", None)
        sampler = getattr(getattr(shard, "batch_sampler", shard), "sampler", None)
        if isinstance(sampler, StandInSampler) and hasattr(loader, "set_sampler"):
            # Linked as accelerate links its own seedable sampler: a resume's loader, which skips the batches already
            # trained, set no epoch on it, and drew the resumed epoch's rest from epoch 0's order
            loader.set_sampler(sampler)
        return loader

    def get_batch_samples(self, epoch_iterator: Iterator, num_batches: int, device: torch.device) -> tuple[list, LossDenominators | None]:
        """One optimizer step's micro-batches and their loss denominators, summed over ranks.

        Replaces HF's single `num_items_in_batch` token count: we need one count per LM span plus the target
        objects, and the object count is not in `labels`.
        """
        self._close_step()
        batches = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        # Ranks hold equally many micro-batches (stand-ins, train/stand_ins.py, or accelerate even them out), so all
        # of them reach the collective.
        self._denominators = LossDenominators.count(batches).all_reduce(self.args.device) if batches else None
        return batches, self._denominators

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
        if model.training and not isinstance(num_items_in_batch, LossDenominators):
            raise RuntimeError("BBUTrainer.compute_loss in training needs the step's LossDenominators (from get_batch_samples)")
        inputs = inputs.to(self.args.device)  # a no-op when the loader already moved it
        parts = model(inputs, num_items_in_batch=num_items_in_batch)
        loss = parts.loss
        if model.training and inputs.stand_in:
            # Past the epoch's end on this process: run for DDP's collectives, weighed zero (train/stand_ins.py)
            if torch.isfinite(loss):
                self._add_to_step(dict.fromkeys(parts.computed(), 0.0))
            else:
                self._record(parts, inputs)
            loss = loss * 0.0
        elif model.training:
            self._record(parts, inputs)
            valid = inputs.sample_index >= 0
            vision = int(inputs.mm_token_type_ids.sum())
            self.throughput.samples += len(inputs)
            self.budget_dropped += inputs.dropped
            for meta in inputs.meta:
                self.unreadable.update(dict.fromkeys(meta.get("unreadable", ())))
                if "cut" in meta:  # an answer its crop or mirror made too long (train/dataset.py)
                    self.cut_in_draws[meta["cut"]] = None
            self.throughput.vision_tokens += vision
            self.throughput.text_tokens += int(valid.sum()) - vision
            # The terms are already divided by counts over all ranks, but DDP and ZeRO average gradients over
            # ranks: undo that average (HF does the same for its own `num_items_in_batch`).
            loss = loss * num_items_in_batch.world_size
        return (loss, parts) if return_outputs else loss

    def _record(self, parts: LossTerms, inputs: Batch) -> None:
        """Add a micro-batch's share of each term to the current step (a non-finite one spoils the step's log)."""
        if not torch.isfinite(parts.loss):
            self._nonfinite_loss()
            self._dump_batch(inputs, parts)
            return
        self._add_to_step(parts.computed())

    def _add_to_step(self, terms: dict[str, torch.Tensor | float]) -> None:
        """Add this rank's share of a micro-batch's finite terms to the step being taken."""
        self._open_step = self.state.global_step + 1
        for k, v in terms.items():
            self._step_parts[k] = self._step_parts.get(k, 0.0) + (v if isinstance(v, float) else _finite_float(v))

    def _nonfinite_loss(self) -> None:
        """Mark the step being taken non-finite on this rank, and tell the guard, which skips it on every rank."""
        self._open_step = self.state.global_step + 1
        self._step_finite = False
        self.guard.saw_nonfinite_loss()

    def _close_step(self) -> None:
        """Move the finished step's terms into the logging window; a span with no tokens in it is not averaged in.

        A step the guard skipped is non-finite on every rank: one rank's NaN left the others logging the step taken,
        with their shares of its loss alone (half of it on two ranks)."""
        if not self._open_step:
            return
        d = self._denominators
        absent = {k for k, none in (("lm_teacher", d is not None and d.teacher_tokens == 0),
                                    ("lm_student", d is not None and d.student_tokens == 0)) if none}
        if self._step_finite and not self.guard.skipped_step(self._open_step):
            self.loss_window.add_step(self._step_parts, absent)
        else:
            self.loss_window.add_nonfinite()
        self._step_parts, self._step_finite, self._open_step = {}, True, 0

    def _dump_batch(self, inputs: Batch, parts: LossTerms) -> None:
        """Write the offending batch (ids, decoded text, image paths, loss terms) for inspection."""
        folder = Path(self.args.output_dir) / "nan_batches"
        folder.mkdir(parents=True, exist_ok=True)
        tok = self.run.processor.tokenizer
        rows = []
        for b in range(inputs.input_ids.shape[0]):
            ids = inputs.input_ids[b][inputs.sample_index[b] >= 0].tolist()
            rows.append({"input_ids": ids, "text": tok.decode(ids, skip_special_tokens=False)})
        record = {"step": self.state.global_step + 1, "loss_terms": {k: _finite_float(v) for k, v in parts.computed().items()},
                  "images": [m.get("images") for m in inputs.meta], "rows": rows}
        path = new_dump_path(folder, record["step"])
        write_text_atomic(path, json.dumps(record, ensure_ascii=False, indent=1, allow_nan=True))
        where = f"rank {self.args.process_index}: " if self.args.world_size > 1 else ""
        log.warning("%snon-finite loss %s at step %d; batch written to %s", where, record["loss_terms"].get("loss"),
                    record["step"], path)

    def _clip_grad_norm(self, model: torch.nn.Module) -> Any:  # noqa: D102
        # HF clips every step (training.max_grad_norm is above 0): the gradients are whole here, summed over the
        # micro-batches and reduced over the ranks, and not yet clipped. The gradient monitor reads them here; a hook
        # after each backward read one rank's, before DDP reduced them.
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, GradientMonitor):
                callback.read_gradients()
        return super()._clip_grad_norm(model)

    def floating_point_ops(self, inputs: Batch) -> int:
        """0: HF counts FLOPs only for a model with `num_parameters` (a PreTrainedModel), which ours never was."""
        return 0

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):  # noqa: D102
        inputs = self._prepare_inputs(inputs).to(self.args.device)
        for meta in inputs.meta:
            self.unreadable_val.update(dict.fromkeys(meta.get("unreadable", ())))
        with torch.no_grad():
            parts = model(inputs)
        # HF counts a batch as eval_batch_size photos (a Batch is no tensor it can size), and so do its terms here
        self._eval_terms.add(parts, self.args.eval_batch_size, self.gather_function, self.args.device)
        return parts.loss.detach(), None, None

    def _global_means(self) -> dict[str, float]:
        """Each term per optimizer step (summed over its micro-batches and ranks), averaged over the steps since
        the last log; a span term over the steps that had tokens of that span (0 when none had)."""
        self._close_step()
        means = self.loss_window.means(self.args.device)
        nonfinite = means.pop(NONFINITE, 0.0)  # a count, not a term: not logged
        if "loss" not in means and nonfinite > 0:
            # Every step since the last log was non-finite: HF's filter logged 0.0 (the mean of no loss), a loss
            # that read as perfect in the log, history.json and TensorBoard, and pulled the over-fit ratio up
            means["loss"] = float("nan")
        return means

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:  # noqa: D102
        if "loss" in logs:  # every rank reaches here, so the all-reduce cannot hang on a rank that had only NaN steps
            logs.update(self._global_means())  # full precision: the same mean HF logs rounded
        if "eval_loss" in logs:  # in place: on_evaluate's callbacks read this dict on every rank
            logs.update(self._eval_terms.means())
        if "loss" in logs:
            logs["nan_skipped"] = self.guard.skipped
        if "learning_rate" in logs and self.optimizer is not None:
            # HF's learning_rate is its first group's (vision's): the demo logged 1e-3 where its llm trains at 3e-3
            for group in self.optimizer.param_groups:
                logs.setdefault(f"lr/{str(group.get('name', '')).removesuffix('_no_decay')}", group["lr"])
        if "train_runtime" in logs:  # logged once, at the end of training: the speeds of this process's steps
            ran = self.state.global_step - self.loss_sum.first_step
            for k in ("train_samples_per_second", "train_steps_per_second"):
                logs.pop(k, None)
            # HF's samples are the schedule's, all of them full batches; this process ran its share of the steps
            samples = self._schedule_samples * ran / max(self.state.max_steps, 1)
            logs.update(process_speeds(logs["train_runtime"], ran, samples))
        if "train_loss" in logs and self.loss_sum.before is not None:  # logged once, at the end of training
            steps, ran = self.state.global_step, self.state.global_step - self.loss_sum.first_step
            if ran < steps:
                # After a resume, the mean over all the run's steps, from the sums themselves: HF divides this process's
                # sum (`_total_loss_scalar`, every step's by now) by the steps it ran from 5.19 on, by all of the run's
                # before, and pyproject.toml allows both
                logs["train_loss"] = (self.loss_sum.before + self._total_loss_scalar) / steps
        super().log(logs, start_time)

    def _finalize_training(self, trial: Any, num_train_samples: int, start_time: float) -> Any:  # noqa: D102
        self._schedule_samples = num_train_samples  # `log` takes the share of it this process trained
        return super()._finalize_training(trial, num_train_samples, start_time)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:  # noqa: D102
        if self.args.should_save:
            r = self.run
            folder = output_dir or self.args.output_dir
            save_checkpoint(self.accelerator.unwrap_model(self.model), r.processor, r.cfg, r.contract, r.prompt,
                            folder, scale=r.scale)
            # Its bbuvl.yaml names the inputs by path: a resume whose run.json is gone checks them by content against
            # this copy of the run's record, where it compared their spelling (docs/resume.md).
            carry_run_record(self.args.output_dir, folder)

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:  # noqa: D102
        # HF writes checkpoint-N in place, weights first and trainer_state.json last: a SIGTERM or Ctrl-C there left a
        # half checkpoint that predict -c and doctor were shown, behind a line saying half-done work is removed. The
        # folder this save created goes with the save; one that was there before is not this save's to remove.
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        ours = self.args.should_save and not os.path.lexists(folder)
        # The loss summed over every step so far, as HF sums it for `train_loss`: drained at each log, the rest pending
        before = self.loss_sum.before
        self.loss_sum.total = None if before is None else before + self._total_loss_scalar + float(self._tr_loss)
        # Every rank, before HF saves the state: the window's sums are summed over ranks (a collective), and every
        # rank's alarms go into the checkpoint and the health.json written beside it (a collective too)
        self._close_step()
        self.loss_window.gather(self.args.device, first=self.args.process_index == 0)
        if (health := health_log(self.callback_handler.callbacks)) is not None:
            health.gather()
        try:
            super()._save_checkpoint(model, trial)
        except BaseException as e:
            # Asked before the half checkpoint goes: torch names no cause, and the disk is asked what a write meets
            # there, which the room freed by the removal would have answered wrongly (a traceback, not the full disk)
            failed = save_failed(e, folder) if isinstance(e, Exception) else None
            if ours:
                remove_path(folder, ignore_errors=True)
            if failed is not None and failed is not e:
                raise failed from e
            raise

    def _run_epoch(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        # HF checks for the last step only after taking one: a run resumed from the checkpoint of its last step (killed
        # in the refit or the save of final/) took one step more, past training.max_steps, unless that step ended an
        # epoch. Nothing is left to train: the run goes on to its end (refit, final/) with the checkpoint's weights.
        if 0 < self.state.max_steps <= self.state.global_step:
            self.control.should_training_stop = True
            return
        super()._run_epoch(*args, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:  # noqa: D102
        load_weights_into(model or self.model, resume_from_checkpoint)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:  # noqa: D102
        super()._save_optimizer_and_scheduler(output_dir)
        if self.average is not None and self.args.should_save:
            self.average.save(output_dir)  # optimizer-like state: numbered checkpoints only, not final/

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:  # noqa: D102
        super()._load_optimizer_and_scheduler(checkpoint)
        if self.average is not None and checkpoint is not None:
            self.average.load(checkpoint, self.optimizer)
        # HF calls this once the weights are in (`_load_from_checkpoint`, or DeepSpeed's own load just before), and
        # before the first step and the callbacks' on_train_begin.
        if checkpoint is not None and self.on_resumed is not None:
            self.on_resumed()


def process_speeds(runtime: float, steps: int, samples: float) -> dict[str, float]:
    """The end of training's speeds: the steps one process trained (`train_runtime_steps`, those `train_runtime` timed)
    and its samples, each over its runtime; none where it trained no step (docs/resume.md, "Speeds")."""
    speeds: dict[str, float] = {"train_runtime_steps": steps}
    if steps > 0 and runtime > 0:  # HF rounds them so
        speeds["train_samples_per_second"] = round(samples / runtime, 3)
        speeds["train_steps_per_second"] = round(steps / runtime, 3)
    return speeds


def new_dump_path(folder: Path, step: int) -> Path:
    """A name in `folder` for a non-finite batch of `step` that no other dump has, claimed by creating it empty.

    The number after the step was the count of files there: two ranks dumping at once took the same name, and one
    batch replaced the other's (as did a dump after one of the folder's files was deleted)."""
    n = len(list(folder.glob("*.json")))  # the dumps' order in the run, as before
    while True:
        path = folder / f"step{step:07d}_{n}.json"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return path
        except FileExistsError:
            n += 1


def warmup_steps(ratio: float) -> float:
    """`TrainingArguments.warmup_steps` for a warm-up over `ratio` of the total steps.

    transformers 5 dropped `warmup_ratio`: its `warmup_steps` reads a float below 1 as that fraction of the total
    and anything from 1 up as a step count, so a whole-run warm-up (ratio 1) is the largest float below 1.
    """
    return min(ratio, math.nextafter(1.0, 0.0))


def training_arguments(cfg: Config, has_eval: bool) -> TrainingArguments:
    """HF TrainingArguments from our config (TensorBoard is added by `make_trainer`, logging under output_dir/tb)."""
    t = cfg.training
    return TrainingArguments(
        output_dir=t.output_dir,
        per_device_train_batch_size=t.per_device_batch_size,
        per_device_eval_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        num_train_epochs=t.num_epochs,
        max_steps=t.max_steps,
        learning_rate=t.lr.llm,  # unused: each group carries its own LR (create_optimizer)
        weight_decay=t.weight_decay,
        warmup_steps=warmup_steps(t.warmup_ratio),
        lr_scheduler_type=t.lr_scheduler,
        max_grad_norm=t.max_grad_norm,
        bf16=t.bf16,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        # HF's rotation deleted a checkpoint a reader held: ours skips it (train/callbacks.py `CheckpointRotation`)
        save_total_limit=None,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps,
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",  # TensorBoard: RunTensorBoard, which takes the folder per run
        remove_unused_columns=False,
        dataloader_num_workers=cfg.data.num_workers,
        use_cpu=t.use_cpu,
        deepspeed=t.deepspeed,
        disable_tqdm=True,
        label_names=["labels"],
        ddp_find_unused_parameters=cfg.detection.enabled and t.detection_freeze_epochs > 0,
    )


def make_trainer(run: Run, progress: bool = True, callbacks: list | None = None) -> BBUTrainer:
    """A ready-to-train BBUTrainer for a built run."""
    cfg = run.cfg
    throughput = Throughput()
    guard = NonFiniteGuard(run.model, cfg.training.max_consecutive_nan)
    health = training_health(run.model, run.train_dataset, run.collator, cfg.monitor)
    trainer = BBUTrainer(
        model=run.model,
        args=training_arguments(cfg, run.eval_dataset is not None),
        train_dataset=run.train_dataset,
        eval_dataset=run.eval_dataset,
        data_collator=run.collator,
        callbacks=[RunTensorBoard(Path(cfg.training.output_dir) / "tb"),
                   EpochCallback(run.train_dataset, run.model, cfg.training.detection_freeze_epochs), guard, *health,
                   RichProgress(throughput, progress), *(callbacks or [])],
        run=run, throughput=throughput, guard=guard,
    )
    trainer.remove_callback(PrinterCallback)  # RichProgress prints one compact line per log instead
    refit = cfg.detection.caption_refit
    if cfg.detection.refits:
        collator = PaddedCollator(run.collator.pad_token_id, run.collator.image_token_id, padding_side="right")
        trainer.add_callback(CaptionRefitCallback(refit, cfg.training.seed, run.train_dataset.encoder, collator,
                                                  run.contract, training_photos(run.train_dataset) + run.refit_photos))
    return trainer


def train(cfg: Config, resume: bool | str = False, progress: bool = True, callbacks: list | None = None,
          overwrite: bool = False, announce: Callable[[RunInputs], None] | None = None) -> dict[str, Any]:
    """Train a run; returns the final checkpoint folder and the logged history.

    A folder holding another run is refused unless resuming or `overwrite` (train/run_dir.py); `resume=True`
    continues from the newest complete checkpoint, skipping ones a kill or a full disk left half-written.
    `announce`: called once (by the first process) with the run's inputs when they are read, before the model loads.
    """
    built: list[Run] = []
    files = DataFiles()  # the checks before the folder is claimed and the run's datasets read each file once
    inputs: list[RunInputs] = []

    weights: list[Path | None] = []  # where the model loads from when not model.path, found once fit's checks pass

    def prepare() -> None:
        weights.append(resumed_weights(cfg, resume))
        start = cfg if weights[0] is None else loaded_from(cfg, weights[0])
        inputs.append(read_run_inputs(with_base_located(start), files))
        if announce is not None and first_process():
            announce(inputs[0])

    def make() -> BBUTrainer:
        built.append(build_run(cfg, files, inputs[0], weights[0]))
        return make_trainer(built[0], progress, callbacks)

    trainer = fit(cfg, make, resume, overwrite, files, prepare,
                  check_checkpoint=lambda ckpt: check_same_prompt(ckpt, inputs[0].prompt))
    run = built[0]
    unreadable, cut_in_draws, dropped = drawn_notes(list(trainer.unreadable), list(trainer.cut_in_draws),
                                                    trainer.budget_dropped)
    unreadable_val = drawn_notes(list(trainer.unreadable_val), [], 0)[0]
    return {"final": str(Path(cfg.training.output_dir) / FINAL_DIR), "history": trainer.state.log_history,
            "nan_skipped": trainer.guard.skipped, "budget_dropped": dropped,
            "unreadable": unreadable, "unreadable_val": unreadable_val,
            "oversize_skipped": skipped_counts(run.train_dataset, run.eval_dataset), "answers_truncated": len(run.train_dataset.truncated),
            "answers_cut_in_draws": len(cut_in_draws),
            "answers_measured": len(run.train_dataset.answer_tokens),
            "longest_answer": max(run.train_dataset.answer_tokens, default=0),
            "answers_over_budget": run.train_dataset.answers_longer_than(cfg.inference.max_new_tokens),
            "sample_cache": cache_summary(run.train_dataset.cache),
            "alarms": health_summary(trainer.callback_handler.callbacks)}


def cache_plan(dataset: ConversationDataset, budget_mb: float, processes: int, available_mb: float) -> tuple[str, bool]:
    """What `data.sample_cache_mb` will keep (how many of the samples its budget holds), and whether the `processes`
    on this machine can hold that in the memory available now."""
    need = dataset.cache_need_bytes() / 2**20
    kept = min(need, budget_mb)  # MiB each process will hold
    n = len(dataset)
    held = n if need <= budget_mb else int(n * budget_mb / need)
    text = (f"data.sample_cache_mb={budget_mb:g}: keeping {'all' if held == n else f'about {held} of'} {n} training "
            f"samples between epochs (about {kept:.0f} MiB a process, {need:.0f} MiB for all)")
    fits = processes * kept <= available_mb
    if not fits:
        text += (f"; {processes} process(es) on this machine would keep {processes * kept:.0f} MiB and "
                 f"{available_mb:.0f} MiB are available: lower data.sample_cache_mb")
    return text, fits


def cache_summary(cache: SampleCache | None) -> dict[str, float] | None:
    """This process's sample cache at the end of training: draws read from it, draws encoded, MiB held; None without."""
    if cache is None:
        return None
    return {"hits": cache.hits, "misses": cache.misses, "held_mb": cache.held / 2**20, "samples": len(cache)}


def fit(cfg: Config, make: Callable[[], BBUTrainer], resume: bool | str = False, overwrite: bool = False,
        files: DataFiles | None = None, prepare: Callable[[], None] | None = None,
        accept_code: bool = False, check_checkpoint: Callable[[str], None] | None = None) -> BBUTrainer:
    """What every training method shares around its trainer: claim the output folder, find the checkpoint to
    resume, train, swap in `final/` and write history.json. `make` builds the trainer once the folder is claimed;
    `prepare`, the method's own start-up checks, runs before it, and `--overwrite` clears the folder only once `make`
    has built the trainer. The checks here read
    the data files through `files` (shared with `prepare` and `make`, train/data_files.py). `accept_code`: a resume
    goes on with user reward code edited since (named in a warning, recorded in run.json) instead of refusing it.
    `check_checkpoint`: the method's own check of the checkpoint resumed, once the run record's has passed.

    The folder is held against other processes, and the run's inputs registered as read, from the first check to the
    last write (train/run_dir.py `holding_run`): a run started from Python is refused and seen as `bbuvl train` is."""
    kernel_notes_once()  # said by the first process, not once a rank
    # A start refused leaves no folder it made (a transformers Trainer makes training.output_dir when it is built)
    with holding_run(cfg, resume if isinstance(resume, str) else None, overwrite), \
            left_as_found(Path(cfg.training.output_dir)):
        return _fit_held(cfg, make, resume, overwrite, files, prepare, accept_code, check_checkpoint)


def _fit_held(cfg: Config, make: Callable[[], BBUTrainer], resume: bool | str, overwrite: bool,
              files: DataFiles | None, prepare: Callable[[], None] | None, accept_code: bool,
              check_checkpoint: Callable[[str], None] | None) -> BBUTrainer:
    """`fit`, its run folder held."""
    out = Path(cfg.training.output_dir)
    files = files or DataFiles()
    check_inputs(cfg)  # each missing input named by its key, before anything else reads it
    if isinstance(resume, str) and not base_gone(cfg, resume):  # with the base gone, `resumed_weights` says both
        # Before the checks of what the run writes over: `--resume-from RUN/final` into RUN was told to choose another
        # output folder, where the answer is a checkpoint-N (a cut save: the newest one beside it is named).
        check_resumable_from(resume)
    refit = cfg.detection.caption_refit.photos if cfg.detection.refits else None
    check_run_inputs(out, {"model.path": cfg.model.path, "data.train": cfg.data.train, "data.val": cfg.data.val,
                           "data.teachers": cfg.data.teachers, "data.hierarchy": cfg.data.hierarchy,
                           "detection.caption_refit.photos": refit}, overwrite,
                     own={"--resume-from": resume if isinstance(resume, str) else None}, files=files)
    check_held_out(cfg, files)  # before the folder is touched: validation shown in training is no run to start
    previous = check_output_dir(out, resume=bool(resume), overwrite=overwrite)  # another run's folder is refused first
    if resume and first_process() and (put := finish_swap(out / FINAL_DIR)) is not None:
        # The run's last save of final/ stopped between its two renames (model/checkpoint.py: swap_in): its readers
        # said "no such checkpoint folder" until this put the whole one back.
        log.warning("%s: put back as %s, where a save stopped between its two renames had left it", put, out / FINAL_DIR)
    if isinstance(resume, str):
        check_resume_into(out, resume)  # another folder's checkpoint into a folder holding a run of its own
    check_start(cfg)  # after the output folder's own checks, which say more; before --overwrite clears it
    check_precision(cfg)  # and before --overwrite clears it
    if prepare is not None:
        prepare()  # a typo in data.val or a bad line must not cost the run --overwrite would replace
    ckpt, accepted = None, []
    if isinstance(resume, str):
        newer = abandoned_checkpoints(out, resume)
        if newer:  # resuming would cut them (train/resume_records.py): a typo must not cost them
            raise RunDirError(f"--resume-from {resume}: training.output_dir {out} holds {', '.join(p.name for p in newer)}, "
                              "complete and past its step, which resuming from it would remove: delete them yourself "
                              "to go back, pass --resume to continue from the newest, or choose another "
                              "training.output_dir")
        ckpt = resume
    elif resume:
        found, skipped = latest_complete_checkpoint(out)
        if found is None and not out.is_dir():  # a mistyped folder read as a run whose checkpoints are all damaged
            raise RunDirError(f"--resume: training.output_dir {out} does not exist{looked_from(out)}, so there is no run "
                              "to continue; check the path, or leave out --resume to start a new run there")
        if found is None:  # said with what to do: the run saved no step whole
            raise RunDirError(nothing_to_resume(out, skipped))
        newer = abandoned_checkpoints(out, found)
        if newer:  # its name is not its step (a copy, a rename): resuming would cut the run's newest checkpoints
            raise RunDirError(f"--resume: {found} is the newest checkpoint by its name, but it was saved at step "
                              f"{global_step(found)} (its trainer_state.json), and {', '.join(p.name for p in newer)}, "
                              f"complete and past that step, would be removed by resuming from it. Move {found.name} "
                              f"out of training.output_dir, or rename it checkpoint-{global_step(found)} if no folder has "
                              "that name")
        ckpt = str(found)
    upgraded: list[str] = []
    ran_under: dict[str, str] | None = None
    if ckpt is not None:
        # before minutes of loading, and before a head that does not fit is loaded
        accepted = check_resume(cfg, ckpt, files, accept_code)
        upgraded, ran_under = software_changes(ckpt), software_before(ckpt)
        if upgraded and first_process():
            # Not refused: an upgrade that fixes a bug is a reason to resume. But the steps after it are another
            # program's, so the run says so and run.json records where (docs/resume.md, "Another program").
            log.warning("resuming under another program than the run last ran under: %s; the run goes on, but not bit "
                        "for bit as one that never stopped would (run.json's resumed_under records the step)",
                        "; ".join(upgraded))
        if check_checkpoint is not None:
            check_checkpoint(ckpt)
        if accepted and first_process():
            log.warning("resuming with reward code edited since the run started (--accept-reward-code): %s",
                        "; ".join(accepted))
        check_steps_left(cfg, ckpt)
        check_training_state(ckpt)  # likewise: a checkpoint pruned of its optimizer's state is refused
        check_cut_back(out, ckpt)  # and a folder of someone's that cut_back would take for a killed save
        if cfg.model.lora.enabled:
            check_lora_base(ckpt, adapters_base_of(cfg))  # a run recorded before run.json: its only check
    trainer = make()  # refused here when transformers would train its processes one by one (`check_distributed`)
    if trainer.args.should_save:
        # Only once the model is built: a LoRA target, a head size or an attention kernel it refuses must not cost
        # the run --overwrite would replace. Building writes nothing there (the writers start with the first step).
        clear_previous_run(out, previous)

    def start_records() -> None:
        """The run's record, and its records cut back to the checkpoint resumed: written once the run has started, so
        a build that failed, or a checkpoint whose weights were refused, leaves the folder as it was."""
        if not trainer.args.should_save:
            return
        if not (out / RUN_RECORD).exists():
            out.mkdir(parents=True, exist_ok=True)
            write_run_record(out, cfg, files)
        if accepted:  # the next resume checks the code against the new digests
            record_accepted_code(out, cfg, global_step(ckpt), accepted)
        if upgraded and (out / RUN_RECORD).is_file():
            record_resumed_software(out, global_step(ckpt), ran_under)
        if ckpt is not None:
            cut_back(out, ckpt)  # nothing the stopped run logged past the checkpoint stays beside what this one logs

    if ckpt is None:
        start_records()
    else:
        trainer.on_resumed = start_records  # once its weights, optimizer and schedule are loaded (BBUTrainer)
    try:
        with no_room_named(out), closing_event_writers(trainer.callback_handler.callbacks):
            trainer.train(resume_from_checkpoint=ckpt)
    except TrainingDiverged:
        # HF ends no run a callback stops by raising: the losses that led there and the alarms naming the groups gone
        # non-finite were lost with it (the run's records are its own by now: `start_records` ran at its start). The
        # guard's verdict is every rank's, so every rank stops here, at the same step, and hands its alarms over.
        health = health_log(trainer.callback_handler.callbacks)
        if health is not None:
            health.gather()
        if trainer.args.should_save:
            write_text_atomic(out / HISTORY_FILE, json.dumps(trainer.state.log_history, indent=1))
            if health is not None:
                health.finish()
        raise
    final = out / FINAL_DIR
    staging = swap_names(final)[0]
    if trainer.args.should_save:
        # a killed save's files, maybe another run's (a file this one does not write stays); a link or a file there is
        # removed as such (rmtree failed on them once the whole run had trained, naming no path), never what it names
        remove_path(staging)
    try:
        with no_room_named(staging, final):
            trainer.save_model(str(staging))
    except BaseException:
        if trainer.args.should_save:  # a stopped or failed save: its half final/ goes with it, the previous one stays
            remove_path(staging, ignore_errors=True)
        raise
    if trainer.args.should_save:
        swap_in(staging, final)
        # The first process's alone, as every record of the run: each rank's log ends in its own speeds
        # (train_runtime ...), and the rank that ended last wrote the file
        write_text_atomic(out / HISTORY_FILE, json.dumps(trainer.state.log_history, indent=1))
    return trainer


@contextmanager
def no_room_named(where: Path, name: Path | None = None) -> Iterator[None]:
    """A save into `where` (`name` to the user: final/ for its staging folder) that found no room raises the
    WriteFailed naming it and why (`save_failed`): torch says only "[enforce fail at inline_container.cc] unexpected pos
    8513920 vs 8513812" for an optimizer.pt cut short, a traceback where the command says how to go on (make room, then
    --resume)."""
    try:
        yield
    except Exception as e:
        failed = save_failed(e, where, name)
        if failed is None or failed is e:
            raise
        raise failed from e


def save_failed(e: Exception, where: Path, name: Path | None = None) -> WriteFailed | None:
    """`e`, raised by a save into `where` (a checkpoint folder, or the run folder; `name` to the user), as a WriteFailed
    naming the file when `e` does, else the folder, and why, when it is a write that found no room (a full disk, a
    used-up quota, a file past the size limit: NO_ROOM); None for any other error. Asked while what the save wrote is
    still there (bbuvl/atomic.py, `failed_write_errno`)."""
    if isinstance(e, WriteFailed):
        return e  # a write of ours (bbuvl/atomic.py) names its file already
    code = failed_write_errno(e, where)
    if code is None or code not in NO_ROOM:
        return None
    # Not the file written last: safetensors removes the file it could not finish, and the one before it was named
    what = e.filename if isinstance(e, OSError) and e.filename else name or where
    return WriteFailed(code, f"{what}: saving failed ({os.strerror(code)})", os.strerror(code))


def check_steps_left(cfg: Config, checkpoint: str | Path) -> None:
    """Refuse resuming a checkpoint saved past training.max_steps: a run cannot train back to an earlier step, and HF
    took one step more and saved its final/ there, as if the run had been asked for that many."""
    step, max_steps = global_step(checkpoint), cfg.training.max_steps
    if 0 < max_steps < step:
        raise RunDirError(f"resuming from {checkpoint}: it was saved at step {step}, past training.max_steps {max_steps}: "
                          "a run cannot go back to an earlier step. Raise training.max_steps to at least "
                          f"{step}, or resume from a checkpoint-N of step {max_steps} or less with --resume-from")


def check_same_prompt(checkpoint: str | Path, prompt: Prompt) -> None:
    """ResumeMismatch when `prompt`, the one this run builds from its data, hierarchy and data.lang, is not the one
    `checkpoint` trained with (its prompt.json): bbu-vl writes the prompt, so one upgraded since may word it otherwise,
    and the resumed run trained on in silence with another system text or label list than its first steps."""
    try:
        saved = Prompt.load(checkpoint)
    except CheckpointError:
        return  # missing or damaged: the checkpoint's own checks name it (train/run_dir.py)
    if saved == prompt:
        return
    if saved.labels != prompt.labels:
        gone = [label for label in saved.labels if label not in prompt.labels]
        new = [label for label in prompt.labels if label not in saved.labels]
        what = ("its labels " + "; ".join(filter(None, (
            f"{', '.join(map(show_text, gone[:3]))} no longer offered" if gone else "",
            f"{', '.join(map(show_text, new[:3]))} new" if new else "",
            "in another order" if not gone and not new else ""))))
    elif saved.lang != prompt.lang:
        what = f"its language {saved.lang} (now {prompt.lang})"
    else:
        at = next((i for i, (a, b) in enumerate(zip(saved.system, prompt.system)) if a != b),
                  min(len(saved.system), len(prompt.system)))
        what = (f"its system text, from character {at}: {show_text(saved.system[max(0, at - 20):at + 40])} (now "
                f"{show_text(prompt.system[max(0, at - 20):at + 40])})")
    raise ResumeMismatch(f"--resume from {checkpoint}: the prompt this run builds is not the one it trained with "
                         f"({Path(checkpoint) / PROMPT_FILE}): {what}. The prompt is written by bbu-vl from the run's "
                         "data, label hierarchy and data.lang, which the run's record holds the same, so the bbu-vl "
                         "writing it changed (upgraded since?); resuming would train the rest of the run on another "
                         "prompt. Resume with the bbu-vl the run started with, or start a new run with model.path set "
                         "to the checkpoint")


def dry_run(cfg: Config) -> dict[str, Any]:
    """Config check, model load, one batch forward + backward: memory and token counts, no optimizer step."""
    import resource

    files = DataFiles()
    check_inputs(cfg)
    check_start(cfg)
    check_precision(cfg)  # a dry run passed training.bf16 on a machine without bf16, which the start then refused
    check_held_out(cfg, files)
    run = build_run(cfg, files)
    batch = run.collator([run.train_dataset[i] for i in range(min(cfg.training.per_device_batch_size, len(run.train_dataset)))])
    run.model.train()
    parts = run.model(batch.to(next(run.model.parameters()).device))
    parts.loss.backward()
    terms = parts.computed()
    groups = {g: sum(p.numel() for _, p in named) for g, named in assign_groups(run.model).items()}
    return {
        "loss_terms": {k: _finite_float(v) for k, v in terms.items()},
        "samples": len(batch),
        "tokens": int((batch.sample_index >= 0).sum()),
        "vision_tokens": int(batch.mm_token_type_ids.sum()),
        "trainable_per_group": groups,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        "train_samples": len(run.train_dataset),
        "finite": all(math.isfinite(_finite_float(t)) for t in terms.values()),
    }
