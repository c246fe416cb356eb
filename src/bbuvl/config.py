"""One validated config for a whole run: model, data, training, detection, loss, inference, monitor.

The schema (pydantic models) and how a run's YAML plus `key=value` overrides become one; the YAML itself is
read by data/yamlfile.py (bounded, duplicate keys refused, the line of every key kept for the errors here).

Every key is checked: an unknown key is an error naming its location (file:line when it came from
YAML) and the closest valid key; a wrong type names the key and the expected type.
"""

from __future__ import annotations

import datetime
import difflib
import logging
import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from bbuvl.data.coords import CONTRACT_FILE, QWEN_MAX_PIXELS, QWEN_MIN_PIXELS, CoordinateContract
from bbuvl.data.families import FAMILIES, Family, family_of, get_family
from bbuvl.data.regions import parse_grid
from bbuvl.data.text import bom_encoding, drop_invisible, gbk_hint, show_text
from bbuvl.data.yamlfile import YamlError, load_yaml
from bbuvl.paths import expand_path


def _user_path(value: Any) -> Any:
    """A path as typed, expanded (bbuvl/paths.py); an empty one is refused."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        # Path("") is the current folder: `training.output_dir=""` trained into whatever folder the command ran in.
        raise ValueError(f"an empty path ({value!r}); give a file or folder (null where the key may be unset)")
    return expand_path(value)


# Every path the config takes: `~` and `$VAR` expanded as a shell would, an unset variable refused (bbuvl/paths.py).
UserPath = Annotated[str, BeforeValidator(_user_path)]


def _takes_numbers_only(annotation: Any) -> bool:
    """Whether a field annotated `annotation` takes an int or a float and never a bool (`int | None`, `float`)."""
    kinds = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    kinds = tuple(get_args(k)[0] if get_origin(k) is Annotated else k for k in kinds)
    return bool not in kinds and any(k in (int, float) for k in kinds)


class KeysConflict(ValueError):
    """Keys that only work together, or contradict each other: `keys`, their dotted paths, are each located (file:line
    or override) where the error is told, not only their section's first line."""

    def __init__(self, message: str, *keys: str):
        super().__init__(message)
        self.keys = keys


# A number in scientific notation as YAML 1.2 writes it (`1e3`, `5E-6`, `1.5e+2`); YAML 1.1 wants a dot and a sign.
_SCIENTIFIC = re.compile(r"[-+]?([0-9][0-9_]*(\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+")


class _Strict(BaseModel):
    # No float in a run is meaningful as inf or NaN: `lr: .inf` used to train to a non-finite final/.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads `true`, `yes` and `on` as booleans, which pydantic takes for 1 where a number belongs:
        # `seed: yes` trained with seed 1. A number typed as a quoted string stays accepted: YAML reads `1e-4` as one.
        if isinstance(value, bool) and _takes_numbers_only(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"must be a number, got {str(value).lower()} (YAML reads true/false, yes/no and on/off "
                             "as booleans)")
        # YAML 1.1 reads `1e3` (no dot) as text, which a float key parses and an integer key refused ("got '1e3'"),
        # though `training.save_steps=1e3` on the command line is read as the number (`parse_overrides`)
        if (isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip())
                and _takes_numbers_only(cls.model_fields[info.field_name].annotation)):
            return float(value)
        return value


class LoraConfig(_Strict):
    """LoRA / QLoRA adapters through peft."""

    enabled: bool = False
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], min_length=1)
    vision: bool = False  # also adapt the vision tower's attention/MLP
    bits: Literal[16, 8, 4] = 16  # 4 or 8 = QLoRA (bitsandbytes, GPU only)


class ModelConfig(_Strict):
    """Which checkpoint to load and how the model sees images."""

    path: UserPath = "Qwen/Qwen2.5-VL-3B-Instruct"  # local folder or hub id
    # "auto": the checkpoint's config.json model_type. Naming it lets data commands work before the model is
    # downloaded; training then checks that the checkpoint agrees (docs/families.md).
    family: Literal[("auto", *FAMILIES)] = "auto"  # type: ignore[valid-type]  # data/families.py's entries
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    min_pixels: int = Field(QWEN_MIN_PIXELS, gt=0)
    max_pixels: int = Field(QWEN_MAX_PIXELS, gt=0)
    max_vision_tokens: int = Field(1280, gt=0)  # per image, after the 2x2 merge
    # Per training micro-batch, students' and teachers' photos together: it must hold a batch of full-size photos
    # with their teachers (`batch_budget_problems`), since the collator drops what does not fit.
    max_vision_tokens_per_batch: int = Field(8192, gt=0)
    # Absolute (row, col) codes added to the vision tokens, zero-initialised (docs/localisation.md).
    vision_positions: bool = True
    # When `path` is a checkpoint written by `bbuvl train`: start this run's detection head and vision positions
    # from its files wherever a tensor's name and shape agree (the box tower, proposals, decoder), the rest (the
    # queries, label-specific layers, new options) built fresh. Off: the VLM's weights alone carry over.
    reuse_modules: bool = False
    # Read the system prompt every row of a batch starts with once, not once a row: same loss and gradients, fewer
    # LLM tokens (docs/design.md, "The shared prompt is read once"). Off: every row reads its whole sequence.
    shared_prefix: bool = True
    lora: LoraConfig = LoraConfig()

    @model_validator(mode="after")
    def _frame_valid(self) -> "ModelConfig":
        # The contract checks its own bounds; the family is not read here (that may need the checkpoint).
        try:
            CoordinateContract(self.min_pixels, self.max_pixels, max_vision_tokens=self.max_vision_tokens)
        except ValueError as e:
            keys = ("model.min_pixels", "model.max_pixels", "model.max_vision_tokens")
            raise KeysConflict(str(e), *([k for k in keys if k.split(".")[1] in str(e)] or keys)) from None
        return self

    def resolve_family(self, offline: bool = False) -> Family:
        """The model family: `family` when named, else read from the checkpoint's config.json (`offline`: never
        from the hub, only a local folder or the Hugging Face cache)."""
        return get_family(self.family) if self.family != "auto" else family_of(self.path, offline)

    def frame(self, offline: bool = False) -> CoordinateContract:
        """The image frame this config trains with: pixel bounds, vision-token budget, the family's box convention."""
        return CoordinateContract(self.min_pixels, self.max_pixels, max_vision_tokens=self.max_vision_tokens,
                                  family=self.resolve_family(offline).model_type)


class CropConfig(_Strict):
    """Random crops of the training photos, magnified to the photo's frame: small parts at the scale tiles show them.

    With probability `p` a student photo is shown as a window of its own aspect, its side a uniform share in
    [min_side, max_side] of the photo's, resized to the whole photo's frame; boxes follow the one visibility rule
    (data/regions.py, docs/tiles.md). The draw depends on (seed, epoch, index), so a resumed run sees the same crops.
    """

    p: float = Field(0.0, ge=0, le=1)
    min_side: float = Field(0.25, gt=0, le=1)
    max_side: float = Field(0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> "CropConfig":
        if self.min_side > self.max_side:
            raise KeysConflict(f"data.crop.min_side {self.min_side} is above data.crop.max_side {self.max_side}",
                               "data.crop.min_side", "data.crop.max_side")
        return self


class DataConfig(_Strict):
    """Where the dataset is and how samples are built from it."""

    train: UserPath = "data/train.jsonl"
    val: UserPath | None = "data/val.jsonl"
    teachers: UserPath | None = "data/teachers.jsonl"
    hierarchy: UserPath | None = None  # label hierarchy JSON; None = shipped default
    lang: Literal["zh", "en"] = "zh"
    teacher_ratio: float = Field(0.7, ge=0, le=1)
    num_teachers: int = Field(1, ge=0)
    val_teachers: bool = False
    collator: Literal["padded", "packed"] = "padded"
    padding_side: Literal["right", "left"] = "right"
    max_length: int = Field(4096, gt=0)
    pack_max_tokens: int = Field(8192, gt=0)
    oversize: Literal["resize", "skip"] = "resize"
    num_workers: int = Field(2, ge=0)
    crop: CropConfig = CropConfig()
    # The chance a training photo is shown mirrored left to right in an epoch (its boxes with it); 0: never.
    mirror: float = Field(0.0, ge=0, le=1)
    # Keep encoded training samples in memory between epochs, up to this many MiB per training process (0: encode each
    # draw anew). Only with num_workers 0: a loader worker's copy would last one epoch (docs/design.md, "Samples kept
    # between epochs").
    sample_cache_mb: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _cache_in_process(self) -> "DataConfig":
        if self.sample_cache_mb > 0 and self.num_workers > 0:
            raise KeysConflict(f"data.sample_cache_mb ({self.sample_cache_mb:g}) keeps samples in the training "
                               f"process, and data.num_workers ({self.num_workers}) encodes them in loader workers "
                               "that start again each epoch: set data.num_workers: 0 to keep them, or "
                               "data.sample_cache_mb: 0",
                               "data.sample_cache_mb", "data.num_workers")
        return self


class LearningRates(_Strict):
    """Per-group learning rates; 0 freezes a group."""

    # Under model.lora.enabled peft freezes the base model's weights: LoRA's adapters learn at `llm` (and at `vision`
    # with model.lora.vision), `merger` trains nothing, and `adapter` is the detection head's adapters, the vision
    # positions and the coordinate read-out, never LoRA's (docs/families.md, "LoRA").

    vision: float = Field(2e-6, ge=0)
    merger: float = Field(1e-5, ge=0)
    llm: float = Field(1e-5, ge=0)
    detection: float = Field(1e-4, ge=0)
    adapter: float = Field(1e-4, ge=0)

    @model_validator(mode="after")
    def _something_learns(self) -> "LearningRates":
        if not any(getattr(self, g) > 0 for g in type(self).model_fields):
            raise ValueError(f"every group's learning rate is 0, so nothing would train: give at least one of "
                             f"{', '.join(type(self).model_fields)} a rate above 0")
        return self


class TrainingConfig(_Strict):
    """The optimisation loop (HF Trainer underneath)."""

    # "sft": imitate the answers (train/trainer.py); "grpo": reinforcement fine-tuning with detection rewards,
    # from an SFT checkpoint or a base model in model.path, with the `grpo:` section (rl/, docs/grpo.md).
    method: Literal["sft", "grpo"] = "sft"
    output_dir: UserPath = "runs/bbu-3b"
    seed: int = Field(42, ge=0, lt=2**32)  # numpy's seed range (HF's set_seed seeds numpy too)
    num_epochs: float = Field(10, gt=0)
    max_steps: int = -1  # -1: train num_epochs; else this many optimizer steps
    per_device_batch_size: int = Field(1, gt=0)
    gradient_accumulation_steps: int = Field(8, gt=0)
    lr: LearningRates = LearningRates()
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    max_grad_norm: float = Field(1.0, gt=0)
    # > 0: the run saves an exponential moving average of its weights with this decay, not the last step's, ramped in
    # as min(decay, (1 + n) / (10 + n)) after n steps (0.99 only from step 890). On the demo's 900 cosine steps it
    # lost close-up faults (train/weight_average.py, docs/faults_learning.md "Averaged weights"). 0: off.
    ema_decay: float = Field(0.0, ge=0, lt=1)
    bf16: bool = True
    gradient_checkpointing: bool = True
    logging_steps: int = Field(10, gt=0)
    save_steps: int = Field(200, gt=0)
    eval_steps: int = Field(200, gt=0)
    save_total_limit: int = Field(3, gt=0)
    # The head is held back (not run, not trained) for this share of an epoch's optimizer steps, rounded to a step, while
    # the language model learns the answers (docs/design.md, "Holding the head back"). 0: it trains from the first step.
    detection_freeze_epochs: float = Field(0, ge=0)
    max_consecutive_nan: int = Field(5, gt=0)
    deepspeed: UserPath | None = None
    use_cpu: bool = False

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, v: int) -> int:
        # HF reads any negative max_steps as "train num_epochs" and 0 as neither (it still ran a step): one
        # spelling for epochs, and a step count that trains something.
        if v != -1 and v < 1:
            raise ValueError(f"must be -1 (train num_epochs) or a positive number of steps, got {v}")
        return v

    @model_validator(mode="after")
    def _average_without_shards(self) -> "TrainingConfig":
        # ZeRO-3 holds each weight in shards across the ranks: an average of the local tensors would be of slices.
        if self.ema_decay > 0 and self.deepspeed is not None:
            raise KeysConflict("training.ema_decay averages the full weights on every process, which DeepSpeed's ZeRO "
                               "stages shard: set training.ema_decay: 0 or train without training.deepspeed",
                               "training.ema_decay", "training.deepspeed")
        return self


class CaptionRefitConfig(_Strict):
    """A last phase of training: the head's caption decoder alone, refit on the finished model's frozen query vectors.

    Each training photo's objects are paired with the query whose box covers them best (IoU >= `min_iou`), the
    query that names them at inference; only the caption layers learn, for `steps` batches of `batch_size` pairs
    (docs/tiles.md, "A caption refit"). 0 steps: off.
    """

    steps: int = Field(0, ge=0)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, gt=0)
    min_iou: float = Field(0.5, gt=0, le=1)
    # How the pairs are drawn: 0 each object alike, 1 each label alike (class-balanced, as Kang et al. refit their
    # classifier), between: an object of a label seen n times drawn with weight n^-balance. Faults are the rarest
    # labels, but on the demo's checkpoint 0.5 and 1 gained at most one fault a seed and 1 lost three to five on
    # one: the faults are lost to parts with no box, not to their state (docs/faults_learning.md, "Balanced refit").
    balance: float = Field(0.0, ge=0, le=1)
    # The learning rate over the refit's steps: "cosine" from `lr` down to 0 at the last step, so that the fit ends
    # where its draws have settled, or "constant". On the demo's stage B, two draws of the constant refit of one model
    # put the whole cabinets' AP bars on 12 and 9 unseen seeds of 12, the cosine ones on 12 and 12; over three training
    # seeds cosine held the close-up verdict on 32 pairs of 36 against 28 (docs/faults_learning.md, "The refit's
    # learning rate").
    schedule: Literal["constant", "cosine"] = "cosine"
    # The share of each refit batch drawn from queries that cover nothing: a box no object lies under (IoU < 0.1 with
    # every one) whose objectness reaches 0.2, taught to write an empty caption. A head refit with it scores each
    # label against "nothing" too, so a box on an unlabelled outlet that reads as a missing screw loses its score
    # (docs/faults_learning.md, "Captions that can say nothing"). 0: off.
    background: float = Field(0.0, ge=0, lt=1)
    # A JSONL of more photos the refit reads after the training photos; training never reads them. For example, whole
    # cabinets and the tiles inference will cut them into (`bbuvl data tile`), so that the captions also learn what a
    # tile shows and to name nothing on its clutter. On the demo's stage B, over three training seeds and 24 unseen
    # seeds, the whole cabinets' fault AP moved by -0.010 to +0.039 and the verdict's ranking not at all: measured, off
    # in the demo (docs/faults_learning.md, "Whole cabinets in the refit"). None: the training photos alone.
    photos: UserPath | None = None


class DetectionConfig(_Strict):
    """The optional DETR-style head on the VLM's hidden states."""

    enabled: bool = True
    num_queries: int = Field(100, gt=0)
    two_stage: bool = True  # queries start from the best per-vision-token proposals (Deformable DETR two-stage)
    # Two-stage: the queries are seeded by the best proposals that no better one overlaps above this IoU (DDQ-DETR's
    # distinct queries), so a big part's many tokens do not take every query from the small parts beside it
    # (docs/faults_learning.md, "Distinct queries"). 1 = plain top-k.
    query_nms: float = Field(1.0, gt=0, le=1)
    # Self-attention over the memory before proposals and queries (Deformable DETR's encoder): gives each
    # vision token the context to say where its object's edges are (docs/localisation.md).
    encoder_layers: int = Field(1, ge=0)
    # 3x3 convolutions over the vision-token grid before proposals (FCOS's tower): each token reads its
    # neighbours' features directly, where a box's edges are (docs/localisation.md).
    local_layers: int = Field(2, ge=0)
    # Each decoder query also reads the memory sampled on a P x P grid inside its reference box (RoIAlign,
    # Faster R-CNN's second stage); 0 = off.
    roi_points: int = Field(4, ge=0)
    # The vision tower's pre-merge patches (14 or 16 px, 2x the token grid) as a second, finer level: folded into the
    # token grid before the proposals and RoI-sampled per query, both through zero-initialised projections
    # (docs/tiles.md, "Finer features"). Two-stage head only.
    fine_features: bool = False
    # The photo's own pixels, as the tower received them, sampled on a P x P grid inside each query's reference box
    # through a zero-initialised MLP: a third level, for what lies inside a part (a screw's empty hole, a plug half
    # out) rather than where it is (docs/tiles.md, "The state"). 0 = off; two-stage head only.
    pixel_points: int = Field(0, ge=0)
    # Which box the pixel level samples: "reference" (the query's proposal, as first built) or "refined" (the
    # decoder's own box, detached: tighter on a small part, where its state lies; docs/faults_learning.md, "The pixels
    # of the refined box").
    pixel_box: Literal["reference", "refined"] = "reference"
    # With the pixel level: a second P x P grid over the box widened this many times about its centre, through a
    # zero-initialised MLP of its own, so a caption also reads what surrounds a part (an empty screw hole on a BBU's
    # ear, or on a rail). Training leaves it at zero and the caption refit alone fits it, so it needs
    # caption_refit.steps. 0 = off; else above 1 (docs/faults_learning.md, "The pixels around the box").
    pixel_context: float = Field(0.0, ge=0, le=8)
    # A second look at the decoder's box (two-stage, with roi_points): the token grid (and the fine level) sampled again
    # inside the box the decoder drew, and a box layer, zero at the start, that corrects it; Cascade R-CNN's and
    # Deformable DETR's refinement in one step. For the loose boxes of faulty parts (docs/faults_learning.md).
    box_refine: bool = False
    decoder_layers: int = Field(2, gt=0)
    # How much of the head's gradient reaches the VLM (0 = the VLM learns from its language loss only). In full,
    # the head's box losses swamped the vision features and its captions stayed at chance; a tenth trains the
    # vision tower for where *and* what, and the VLM then names shapes it could not (docs/localisation.md).
    grad_to_vlm: float = Field(0.1, ge=0, le=1)
    caption_layers: int = Field(4, gt=0)
    num_heads: int = Field(8, gt=0)
    d_model: int = Field(512, gt=0)  # head width; capped at the LLM's hidden size (512 keeps the 3B's head ~31M params)
    adapter_ratio: int = Field(8, gt=0)  # bottleneck = hidden / ratio
    box_format: Literal["cxcywh", "xyxy"] = "cxcywh"
    caption_max_tokens: int = Field(32, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    caption_refit: CaptionRefitConfig = Field(default_factory=CaptionRefitConfig)

    @field_validator("pixel_context")
    @classmethod
    def _context_is_wider(cls, v: float) -> float:
        if 0 < v <= 1:
            raise ValueError(f"must be 0 (off) or a factor above 1 that widens the box, got {v}")
        return v

    @model_validator(mode="after")
    def _context_needs_pixels(self) -> "DetectionConfig":
        if self.pixel_context and not self.pixel_points:
            raise KeysConflict("detection.pixel_context samples a grid of detection.pixel_points a side: set "
                               "pixel_points above 0, or pixel_context: 0", "detection.pixel_context",
                               "detection.pixel_points")
        if self.pixel_context and self.caption_refit.steps <= 0:
            raise KeysConflict("detection.pixel_context is fitted by the caption refit alone (training leaves it at "
                               "zero): set detection.caption_refit.steps above 0, or pixel_context: 0",
                               "detection.pixel_context", "detection.caption_refit.steps")
        return self

    @property
    def refits(self) -> bool:
        """Whether a run ends with the caption refit: it has a head, and the refit has steps."""
        return self.enabled and self.caption_refit.steps > 0


class LossConfig(_Strict):
    """Weights of every loss term and the matcher's costs."""

    teacher_weight: float = Field(0.3, ge=0)
    student_weight: float = Field(1.0, ge=0)
    bbox_weight: float = Field(5.0, ge=0)
    giou_weight: float = Field(2.0, ge=0)
    objectness_weight: float = Field(1.0, ge=0)
    caption_weight: float = Field(1.0, ge=0)
    # Weight of the number-token loss on answer digits (model/number_token_loss.py, docs/number_token_loss.md):
    # added per span like the LM terms; 0 computes nothing and needs no digit-splitting tokenizer.
    number_token: float = Field(0.0, ge=0)
    # Weight of the coordinate regression (model/coordinate_loss.py, docs/grpo.md): a training-only linear read-out
    # of each box coordinate from the hidden states that write its digits; 0 builds nothing.
    coordinate_regression: float = Field(0.0, ge=0)
    # Weight of grounding attention (model/grounding_attention.py, docs/grpo.md): while the answer writes a box, the
    # first `grounding_heads` heads of every attention layer are pulled onto the object's image tokens. Works with
    # every model.attn_implementation (only the supervised rows are recomputed); 0 computes nothing.
    grounding_attention: float = Field(0.0, ge=0)
    grounding_heads: int = Field(1, ge=1)
    focal_alpha: float = Field(0.25, ge=0, le=1)
    focal_gamma: float = Field(2.0, ge=0)
    # What objectness learns for a positive: "binary" = 1 (focal loss), "iou" = the IoU of its own box with its
    # object (quality focal loss, GFL), so the best-placed of several candidates scores highest (docs/localisation.md).
    objectness_target: Literal["binary", "iou"] = "iou"
    # Which decoder queries learn an object: "one_to_one" (DETR's Hungarian matching, no NMS needed) or
    # "overlap" (every query at IoU >= 0.5, Faster R-CNN's second stage; needs inference.nms_iou or part_nms, and is
    # refused without either).
    assignment: Literal["one_to_one", "overlap"] = "one_to_one"
    match_cost_class: float = Field(1.0, ge=0)
    match_cost_bbox: float = Field(5.0, ge=0)
    match_cost_giou: float = Field(2.0, ge=0)
    # How many times a fault (a label the hierarchy file marks as one) counts in the head's terms: its matched
    # query's box, objectness and caption, and its proposals' box and objectness. 1 = every object alike
    # (docs/faults_learning.md, "Faults weighed more").
    fault_weight: float = Field(1.0, gt=0)
    # Weight of the empty caption taught, in training, to each query the matcher left unmatched whose box covers no
    # object (IoU < 0.1) and whose objectness reaches 0.2: the caption refit's `background`, learned by the features
    # too (docs/faults_learning.md, "Captions that can say nothing"). Each such query counts this much beside a
    # matched object's caption. 0: off. At 0.5 on the demo's stage B (three training seeds) AP50 per label fell on
    # every seed and the whole cabinets' faults lost three seed pairs of 33, the verdict's ranking unchanged.
    caption_nothing_weight: float = Field(0.0, ge=0)


@dataclass(frozen=True)
class PredictMode:
    """One way to predict: what it needs from a checkpoint and where it runs. infer/modes/<name>.py runs it."""

    name: str
    help: str  # a few words for `--help`
    needs_head: bool = False  # a trained detection head (detection.enabled)
    needs_labels: bool = False  # the checkpoint's label vocabulary (prompt.json)
    needs_teachers: bool = False  # teacher photos and their answers (a teachers JSONL)
    serves: bool = True  # `bbuvl serve` runs it (a request cannot bring teacher photos)
    plain_model: bool = False  # a plain model folder, never trained here, can run it (the zero-shot baseline)


# The one registry of prediction modes: `inference.mode`, `bbuvl predict --mode`, `bbuvl serve --mode` and the
# predictor's checks all read it (docs/architecture.md, "Where a change goes").
PREDICT_MODES: dict[str, PredictMode] = {m.name: m for m in (
    PredictMode("generate", "the VLM writes the answer", plain_model=True),
    PredictMode("head", "the detection head's boxes and captions", needs_head=True),
    PredictMode("name", "head boxes named by the VLM", needs_head=True, needs_labels=True),
    PredictMode("teachers", "generate, teacher photos and answers shown first", needs_teachers=True, serves=False),
)}


class InferenceConfig(_Strict):
    """Defaults for prediction."""

    mode: Literal[tuple(PREDICT_MODES)] = "generate"  # type: ignore[valid-type]  # the registry's names
    batch_size: int = Field(4, gt=0)
    max_new_tokens: int = Field(1024, gt=0)
    constrained: bool = True  # answers (generate/teachers) and head captions (head/name) kept to the checkpoint's labels
    num_teachers: int = Field(1, ge=0)
    score_threshold: float = Field(0.0, ge=0, le=1)
    objectness_threshold: float = Field(0.5, ge=0, le=1)
    nms_iou: float | None = Field(None, gt=0, le=1)
    # Tiles and zoom for small parts (docs/tiles.md): "off", "auto" (the grid that shows the photo at tile_zoom,
    # else at the scale the checkpoint trained at, else at full size) or a COLSxROWS grid; each tile at tile_zoom
    # frame pixels per stored pixel (None: each tile fills the whole photo's frame), the whole photo too unless
    # tile_whole is false; zoom_containers: categories whose boxes a first pass finds and a second pass predicts
    # again at full resolution.
    tiles: str = "off"
    tile_overlap: float = Field(0.15, ge=0, lt=0.9)
    # The grid's tiles, at the size its scale gives them, starting at most tile_stride of a tile's side apart: more
    # tiles, each part seen whole in more of them (docs/tiles.md, "Tiles a stride apart"; None: the grid alone).
    tile_stride: float | None = Field(None, ge=0.25, le=1)
    tile_zoom: float | None = Field(None, gt=0, le=8)
    tile_whole: bool = True
    zoom_containers: list[str] = Field(default_factory=list)
    merge_overlap: float = Field(0.6, gt=0, le=1)  # intersection over the smaller box at which two boxes are one object
    # With tiles and the whole photo (docs/tiles.md, "Big parts"): the whole pass answers for boxes at least
    # tile_whole_above of a tile's side, the tiles for smaller ones (None: both for all), and, when the checkpoint
    # knows its trained part sizes, for the categories trained that large (with a fifth of stage B's photos whole
    # cabinets, 0.5 took BBUs on 1792x1344 photos from 0.00-0.03 to 0.38-0.40 AP50, docs/faults_learning.md);
    # tile_drop_cut drops a tile's box cut by the tile's inner edge.
    # head mode: the likeliest labels reported per box, each at objectness x its probability among the
    # checkpoint's labels (1: the greedy caption alone). 2 reports a part's other state beside the one it believes
    # (docs/faults_learning.md, "Labels per box"). Name mode names each box once, whatever it is.
    labels_per_box: int = Field(1, ge=1, le=8)
    # head and name modes: one box a part. Of two queries whose boxes overlap above part_nms and whose likeliest labels
    # name the same part (a judged kind whatever its state, data/faults.py; any other label as itself), the one of
    # lower objectness x P(that part) is dropped with all its labels: a second box on a correct screw, offset from it,
    # reads it as out of place. With 900 steps of stage B, 0.5 raised the close-ups' verdict accuracy on seven of nine
    # pairs of training and unseen seeds and lowered none (mean 0.85 against 0.81; docs/faults_learning.md, "One box a
    # part"). None: off.
    part_nms: float | None = Field(None, gt=0, le=1)
    tile_whole_above: float | None = Field(None, gt=0, le=4)
    tile_drop_cut: bool = False
    # Categories whose whole-pass boxes take their short side and state from the tiles' pieces (a long thin air baffle
    # the whole pass sees one model cell tall; infer/tile_refine.py, docs/tiles.md "Thin parts from the tiles"). None:
    # those `bbuvl choose-tiles` chose for the checkpoint (none if it was not run); []: none.
    tile_refine: list[str] | None = None
    # head and name modes: how many of the head's queries each tile's pass runs (None: all it trained with; the whole
    # photo's pass always runs all). A two-stage head's queries are its surest proposals, and a tile holds a few of the
    # parts a whole training photo does: the rest are boxes of parts already found (docs/tiles.md, "Queries in a tile").
    tile_queries: int | None = Field(None, ge=1)
    # auto: the grid that shows the whole pass's parts at the size the checkpoint trained them at (its
    # training_scale.json's part sides), not the photo at the frame scale it trained at (docs/tiles.md, "Big parts").
    tile_auto_parts: bool = False
    # The photo verdict (infer/verdict.py, docs/faults.md): a predicted fault scoring at least verdict_fail fails the
    # photo, one scoring at least verdict_review sends it to review. The checkpoint's verdict_thresholds.json, chosen
    # by `bbuvl eval --choose-thresholds` on validation photos, overrides these.
    verdict_review: float = Field(0.25, ge=0, le=1)
    verdict_fail: float = Field(0.5, ge=0, le=1)
    # ... for a photo predicted through tiles or zoom (a whole cabinet): its faults are scored by passes that saw
    # parts at another scale, and the close-ups' fail threshold judged whole cabinets worse than "always pass"
    # (docs/faults.md, "Thresholds per framing"). None: the one-pass thresholds above. The checkpoint's
    # verdict_thresholds_tiled.json overrides these.
    verdict_review_tiled: float | None = Field(None, ge=0, le=1)
    verdict_fail_tiled: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _verdict_order(self) -> "InferenceConfig":
        if self.verdict_review > self.verdict_fail:
            raise KeysConflict(f"verdict_review ({self.verdict_review}) must not exceed verdict_fail "
                               f"({self.verdict_fail})", "inference.verdict_review", "inference.verdict_fail")
        review = self.verdict_review if self.verdict_review_tiled is None else self.verdict_review_tiled
        fail = self.verdict_fail if self.verdict_fail_tiled is None else self.verdict_fail_tiled
        if review > fail:
            raise KeysConflict(f"the tiled photos' verdict_review ({review}) must not exceed their verdict_fail "
                               f"({fail}); set verdict_review_tiled and verdict_fail_tiled together",
                               "inference.verdict_review_tiled", "inference.verdict_fail_tiled",
                               "inference.verdict_review", "inference.verdict_fail")
        return self

    @field_validator("tiles")
    @classmethod
    def _tiles(cls, v: str) -> str:
        v = v.strip().lower()
        if v in ("off", "auto"):
            return v
        cols, rows = parse_grid(v)  # ValueError naming the text
        return f"{cols}x{rows}"  # one spelling a grid: '02x2' and ' 2 x 2' resume a '2x2' run


class MonitorConfig(_Strict):
    """Training-health alarms (diagnostics); each alarm is one log line, a TensorBoard scalar and a summary entry."""

    enabled: bool = True
    every_steps: int = Field(10, gt=0)  # gradient / weight norms and the memory check every N optimizer steps
    # The collapse probe is a forward pass over a few training photos, with the other processes waiting for it: every
    # 10 steps it took 4% of the demo's stage-B training; a collapse builds over hundreds of steps (docs/design.md,
    # "Training health").
    collapse_every_steps: int = Field(50, gt=0)
    # Warn when a group's gradient norm (before clipping) exceeds grad_norm_max on more than half of its last
    # grad_norm_window steps: a burst of a few clipped steps is no blow-up (docs/design.md, "Training health");
    # a window of 1 warns on every step above it.
    grad_norm_max: float = Field(100.0, gt=0)
    grad_norm_window: int = Field(10, gt=0)
    collapse_std: float = Field(1e-3, ge=0)  # warn when predicted boxes barely differ across a batch
    overfit_ratio: float = Field(2.0, gt=1)  # warn when eval_loss / train loss exceeds this and is rising
    early_stopping_metric: str | None = None  # e.g. "eval_loss"; None disables early stopping
    early_stopping_patience: int = Field(3, gt=0)  # evaluations without improvement before stopping
    early_stopping_min_delta: float = Field(0.0, ge=0)
    memory_growth_mb: float = Field(512.0, gt=0)  # warn when resident memory grows this much since the first step


class RewardWeights(_Strict):
    """How much each reward (rl/rewards.py) counts in a rollout's total; 0 leaves a term out."""

    detection: float = Field(1.0, ge=0)  # Hungarian-matched IoU over max(truth, answer) objects
    label: float = Field(0.5, ge=0)  # partial credit per hierarchy level of the matched objects
    format: float = Field(0.0, ge=0)  # the answer parses and names vocabulary labels: only with constrained: false
    user: float = Field(0.0, ge=0)  # `user_function`'s value
    # "package.module:function" (or "package.module.function"), called as fn(truth, answer) -> float with two
    # lists of rl.rewards.LabelledBox in the stored photo's pixels.
    user_function: str | None = None

    @property
    def called_function(self) -> str | None:
        """`user_function` when its term counts (`user` above 0), else None: a weight of 0 leaves the term out, and its
        function is then never imported, called or recorded."""
        return self.user_function if self.user > 0 else None

    @model_validator(mode="after")
    def _user_named(self) -> "RewardWeights":
        if self.user > 0 and not self.user_function:
            raise KeysConflict("grpo.rewards.user is above 0 but grpo.rewards.user_function names no function "
                               "(module:function)", "grpo.rewards.user", "grpo.rewards.user_function")
        if not any(getattr(self, k) > 0 for k in ("detection", "label", "format", "user")):
            raise ValueError("every reward weight is 0: give detection, label, format or user a weight above 0")
        return self


class GrpoConfig(_Strict):
    """Group relative policy optimisation (training.method: grpo): rollouts, rewards and the objective (docs/grpo.md)."""

    group_size: int = Field(8, ge=2)  # G sampled answers per photo; advantages are relative within the group
    temperature: float = Field(1.0, gt=0)
    # 1 only: below it rollouts were sampled from the nucleus while the loss scored each token over the whole
    # distribution, another policy than the one sampled (docs/grpo.md, "The policy under the grammar").
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(1024, gt=0)  # per rollout; dr_grpo divides by it
    constrained: bool = True  # rollouts decoded under the answer grammar and the checkpoint's labels (infer/constrained.py)
    # How per-token losses become one number (docs/grpo.md, "Loss variants"): "grpo" averages each answer's tokens,
    # then the answers; "dr_grpo" divides the step's token sum by answers x max_new_tokens; "dapo" by the step's tokens.
    loss_type: Literal["grpo", "dr_grpo", "dapo"] = "dapo"
    scale_rewards: bool = True  # divide advantages by the group's reward std (Dr. GRPO sets this false)
    # "answer": one advantage for every token of an answer (DeepSeekMath's); "parts": the box tokens credited with every
    # reward term but the label's, the label tokens with every one but detection's (rl/answer_parts.py, docs/grpo.md,
    # "Credit per part of the answer").
    advantages: Literal["answer", "parts"] = "answer"
    # Each answer token's probability in the loss and the KL: "grammar", among the tokens the answer grammar allowed at
    # that step, the distribution the rollout was sampled from; "vocabulary", over every token, which let mass leak
    # past the grammar and greedy answers collapse on 2 of 10 starts (docs/grpo.md, "The policy under the grammar").
    # Unconstrained rollouts use the vocabulary.
    logprobs: Literal["vocabulary", "grammar"] = "grammar"
    epsilon_low: float = Field(0.2, ge=0, lt=1)  # ratio clipped to [1 - epsilon_low, 1 + epsilon_high]
    epsilon_high: float = Field(0.28, ge=0)  # DAPO's clip-higher
    beta: float = Field(0.0, ge=0)  # KL to the starting model; 0 holds no reference model
    rewards: RewardWeights = RewardWeights()

    @field_validator("top_p")
    @classmethod
    def _whole_distribution(cls, v: float) -> float:
        if v < 1:
            raise ValueError(f"must be 1, got {v}: rollouts would be sampled from the top-p nucleus while the loss and "
                             "the KL score each token over the whole distribution (or the grammar's allowed tokens), "
                             "another policy than the one sampled; narrow the sampling with grpo.temperature instead")
        return v

    @model_validator(mode="after")
    def _format_needs_freedom(self) -> "GrpoConfig":
        if self.rewards.format > 0 and self.constrained:
            raise KeysConflict("grpo.rewards.format counts only when decoding is free: every constrained rollout "
                               "parses; set grpo.constrained: false or grpo.rewards.format: 0", "grpo.rewards.format",
                               "grpo.constrained")
        return self


class Config(_Strict):
    """A whole run."""

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    detection: DetectionConfig = DetectionConfig()
    loss: LossConfig = LossConfig()
    inference: InferenceConfig = InferenceConfig()
    monitor: MonitorConfig = MonitorConfig()
    grpo: GrpoConfig = GrpoConfig()

    @model_validator(mode="after")
    def _keys_that_work_together(self) -> "Config":
        d = self.detection
        # The head builds these levels on the two-stage token grid only (model/detection_head.py) and dropped them,
        # on a learned-query head, without a word: a run trained without what its config said it had.
        for key in ("fine_features", "pixel_points", "box_refine"):
            if getattr(d, key) and not d.two_stage:
                raise KeysConflict(f"detection.{key} is built on the two-stage head's token grid, and "
                                   "detection.two_stage is false, so the head would leave it out: set "
                                   f"detection.two_stage: true, or turn detection.{key} off", f"detection.{key}",
                                   "detection.two_stage")
        if d.box_refine and not d.roi_points:
            raise KeysConflict("detection.box_refine samples the token grid inside the decoder's box on a grid of "
                               "detection.roi_points a side, which is 0, so the head would leave it out: set roi_points "
                               "above 0, or box_refine: false", "detection.box_refine", "detection.roi_points")
        i = self.inference
        if d.enabled and self.loss.assignment == "overlap" and i.nms_iou is None and i.part_nms is None:
            # every query overlapping an object learns it (docs/localisation.md), so each object gets several boxes
            raise KeysConflict("loss.assignment: overlap teaches every query at IoU >= 0.5 with an object to find it, "
                               "so the head writes several boxes an object, and inference.nms_iou and "
                               "inference.part_nms are both null, which keep them all: set inference.nms_iou (or "
                               "part_nms), or loss.assignment: one_to_one", "loss.assignment", "inference.nms_iou",
                               "inference.part_nms")
        return self


class ConfigError(ValueError):
    """Invalid config; the message lists every problem, one per line."""


class BudgetProblem(str):
    """One reason a run's start gives (`batch_budget_problems`, `run_conflicts`, `run_notes`), as text, with the keys
    at fault (for a batch, those it is counted from, the budget first)."""

    keys: tuple[str, ...]

    def __new__(cls, message: str, keys: tuple[str, ...]) -> "BudgetProblem":
        """The problem `message`, about `keys`."""
        problem = super().__new__(cls, message)
        problem.keys = keys
        return problem


class BudgetError(ConfigError):
    """A training start refused for batches over a budget, or keys that contradict (`run_conflicts`); `problems` keep
    their keys, to be located in the file."""

    def __init__(self, problems: list[BudgetProblem]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ConfigOrigin:
    """Where a loaded config's values came from: its file, each key's YAML line, the override that set each key."""

    source: str
    lines: dict[tuple[str, ...], int]
    overrides: dict[tuple[str, ...], str]

    def locate(self, keys: tuple[str, ...]) -> str:
        """`file:line` (or the override) of the first of `keys` the file or an override sets; the file when none is."""
        for key in keys:
            loc = tuple(key.split("."))
            if loc in self.lines or any(loc[:len(k)] == k for k in self.overrides):
                return _where(loc, self.source, self.lines, self.overrides)
        return self.source

    def line_of(self, keys: tuple[str, ...]) -> int:
        """The YAML line of the first of `keys` the file sets (0 when it sets none: the file as a whole)."""
        return next((self.lines[loc] for loc in (tuple(k.split(".")) for k in keys) if loc in self.lines), 0)

    def describe(self, problems: list[BudgetProblem]) -> str:
        """Each problem on its own line, after the place of the key at fault (as the other config errors name it)."""
        return "\n".join(f"{self.locate(p.keys)}: {p}" for p in problems)


# The keys a batch's count comes from, the budget first: of those the file sets, the first is the one at fault.
_VISION_KEYS = ("model.max_vision_tokens_per_batch", "training.per_device_batch_size", "model.max_vision_tokens",
                "model.max_pixels", "data.num_teachers", "data.teacher_ratio", "model.family")
_PACKED_KEYS = ("data.pack_max_tokens", "training.per_device_batch_size", "data.max_length", "data.collator")


def run_conflicts(cfg: Config) -> list[BudgetProblem]:
    """Keys of a run about to start that contradict each other, each with the keys at fault. Checked when training
    starts and by `bbuvl config check`, as the batch budgets are, never when a checkpoint's config is read: one trained
    before the check still loads, and predicts in a mode it can."""
    problems = []
    if not cfg.detection.enabled and PREDICT_MODES[cfg.inference.mode].needs_head:
        # Accepted, it trained a checkpoint whose own default mode `bbuvl predict` then refused, hours later.
        problems.append(BudgetProblem(
            f"inference.mode {cfg.inference.mode} reads the detection head, and detection.enabled is false, so the "
            "checkpoint would have none: set inference.mode: generate, or detection.enabled: true",
            ("inference.mode", "detection.enabled")))
    return problems


def run_notes(cfg: Config) -> list[BudgetProblem]:
    """Keys of a run about to start that do nothing beside the others, said when it starts and by `bbuvl config check`
    but not refused: `data.teachers=null` given to turn teachers off where the file sets a ratio is a run to start."""
    data, notes = cfg.data, []
    # Only when given: the default ratio stands beside `teachers: null` in configs that never draw a teacher.
    if (cfg.training.method == "sft" and "teacher_ratio" in data.model_fields_set and data.teacher_ratio > 0
            and data.num_teachers > 0 and data.teachers is None):
        notes.append(BudgetProblem(
            f"data.teacher_ratio ({data.teacher_ratio:g}) shows teacher photos beside that share of the training "
            "samples, and data.teachers is null, so no step trains on one; set data.teachers to a teachers JSONL to "
            "train with them", ("data.teacher_ratio", "data.teachers")))
    t = cfg.training
    if t.method == "sft" and t.max_steps > 0 and t.logging_steps > t.max_steps:
        # No training loss was logged at all (history.json held the end's eval_loss and train_loss alone), where GRPO
        # says so for the same case
        notes.append(BudgetProblem(
            f"training.logging_steps ({t.logging_steps}) is past training.max_steps ({t.max_steps}), so no step's "
            "loss is logged (history.json, TensorBoard, the over-fit monitor see none); lower training.logging_steps",
            ("training.logging_steps", "training.max_steps")))
    if (t.method == "sft" and cfg.detection.enabled and t.max_steps == -1 and t.detection_freeze_epochs > 0
            and t.detection_freeze_epochs >= t.num_epochs):
        # The run shipped the head it started with, untrained, without a word. A freeze past max_steps, which the
        # config alone cannot count in steps, is said when the run starts (train/callbacks.py, `EpochCallback`)
        notes.append(BudgetProblem(
            f"training.detection_freeze_epochs ({t.detection_freeze_epochs:g}) holds the detection head back for "
            f"every epoch of the run (training.num_epochs {t.num_epochs:g}): the head never trains, and the "
            "checkpoints hold the one it started with; lower training.detection_freeze_epochs, or set "
            "detection.enabled: false", ("training.detection_freeze_epochs", "training.num_epochs")))
    if t.lr_scheduler == "constant" and t.warmup_ratio > 0 and "warmup_ratio" in t.model_fields_set:
        # HF's "constant" has no warm-up: a run given both started at the full rate, as constant_with_warmup would not
        notes.append(BudgetProblem(
            f"training.warmup_ratio ({t.warmup_ratio:g}) warms nothing up under training.lr_scheduler constant, which "
            "holds every step at the full rate from the first; set training.lr_scheduler: constant_with_warmup to warm "
            "up first, or training.warmup_ratio: 0", ("training.warmup_ratio", "training.lr_scheduler")))
    if t.method == "sft" and cfg.detection.enabled and t.lr.detection == 0 and not cfg.model.reuse_modules:
        # The run shipped a head that never learned (its box layers end at zero: one box for every query), and through
        # grad_to_vlm its loss trained the VLM's features toward that head; a head reused from a checkpoint may stay
        pulled = (f", and its loss still trains the VLM's features toward it (detection.grad_to_vlm "
                  f"{cfg.detection.grad_to_vlm:g})" if cfg.detection.grad_to_vlm > 0 else "")
        notes.append(BudgetProblem(
            "training.lr.detection is 0, which freezes the detection head as the run builds it (model.reuse_modules "
            f"is false: a new head), so the checkpoints hold a head that never learned{pulled}; give "
            "training.lr.detection a rate above 0, set detection.enabled: false, or start the head from a checkpoint's "
            "with model.reuse_modules: true", ("training.lr.detection", "detection.enabled", "model.reuse_modules")))
    if t.method == "sft" and cfg.model.vision_positions and t.lr.adapter == 0 and not cfg.model.reuse_modules:
        # Built at zero (model/vision_positions.py) and held there: the run trained and saved positions that add
        # nothing to any vision token, without a word
        notes.append(BudgetProblem(
            "model.vision_positions adds each vision token's position through a projection built at zero, and "
            "training.lr.adapter 0 holds it there, so no token gets any; give training.lr.adapter a rate above 0, or "
            "set model.vision_positions: false", ("model.vision_positions", "training.lr.adapter")))
    return notes + lora_idle_rates(cfg)


def lora_idle_rates(cfg: Config) -> list[BudgetProblem]:
    """The learning-rate groups given a rate above 0 that hold no trainable weight under LoRA, one note each.

    peft freezes every weight of the VLM but its adapters, which sit on the language model (group llm) and, with
    model.lora.vision, on the vision blocks (group vision): the merger, and the vision tower without adapters, keep
    their weights whatever their rate. Only rates given: the defaults stand in configs that never set them.
    """
    lr, lora = cfg.training.lr, cfg.model.lora
    if not lora.enabled:
        return []
    idle = {} if lora.vision else {
        "vision": "set training.lr.vision: 0, or model.lora.vision: true to adapt the vision blocks at that rate"}
    idle["merger"] = "set training.lr.merger: 0"
    adapters = "the language model (at training.lr.llm)" + (" and the vision blocks (at training.lr.vision)"
                                                             if lora.vision else "")
    return [BudgetProblem(
        f"training.lr.{group} ({getattr(lr, group):g}) trains nothing under model.lora.enabled: LoRA freezes the "
        f"model's own weights and puts its adapters on {adapters}; {fix} (docs/families.md, \"LoRA\")",
        (f"training.lr.{group}", "model.lora.enabled"))
        for group, fix in idle.items() if group in lr.model_fields_set and getattr(lr, group) > 0]


def batch_budget_problems(cfg: Config, factor: int | None = None) -> list[BudgetProblem]:
    """Why the training collator could drop samples from `cfg`'s batches (empty: it never will).

    The collator drops what would take a batch over a budget (encode/collate.py): a batch of full-size photos, each
    with its teachers, must fit, or a dataset of large photos loses samples on most steps; the Qwen3.5 config once
    dropped 2 of every 8 (docs/gpu.md, "Measured on an H200"). `factor`: the family's pixels per token side (None:
    the family's when named, else the smallest, which counts the most tokens). Checked when training starts and by
    `bbuvl config check`, not when a checkpoint's config is read: a checkpoint trained before the check still loads.
    GRPO collates its rollouts without budgets (rl/trainer.py): nothing to check.
    """
    if cfg.training.method != "sft":
        return []
    m, batch = cfg.model, cfg.training.per_device_batch_size
    if factor is None:
        factor = get_family(m.family).factor if m.family != "auto" else min(get_family(f).factor for f in FAMILIES)
    images = 1 + (cfg.data.num_teachers if cfg.data.teacher_ratio > 0 else 0)
    per_image = min(m.max_vision_tokens, m.max_pixels // factor ** 2)  # a photo's tokens: capped by both
    vision = batch * images * per_image
    problems = []
    if vision > m.max_vision_tokens_per_batch:
        problems.append(BudgetProblem(
            f"model.max_vision_tokens_per_batch ({m.max_vision_tokens_per_batch}) is below a batch of "
            f"training.per_device_batch_size ({batch}) full-size photos ({per_image} vision tokens, from "
            f"model.max_vision_tokens and model.max_pixels) with {images - 1} teacher photo(s) each: {vision} vision "
            f"tokens; raise it to {vision}, or lower the batch or the photos' size", _VISION_KEYS))
    if cfg.data.collator == "packed" and batch * cfg.data.max_length > cfg.data.pack_max_tokens:
        problems.append(BudgetProblem(
            f"data.pack_max_tokens ({cfg.data.pack_max_tokens}) is below a packed row of training.per_device_batch_size "
            f"({batch}) samples at data.max_length ({cfg.data.max_length}): {batch * cfg.data.max_length} tokens; "
            f"raise it to {batch * cfg.data.max_length}, or lower the batch or data.max_length", _PACKED_KEYS))
    return problems


# --- loading -----------------------------------------------------------------------------------


def _all_keys(prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of the config, sections and the keys in them."""
    out = []
    for name in _fields_at(prefix):
        out.append(prefix + (name,))
        out += _all_keys(prefix + (name,))
    return out


def _fields_at(loc: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None) if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def _dotted_key(loc: tuple[str, ...]) -> bool:
    """Whether the last key of `loc` is written with dots (`lora.r`) and names a key when nested (`lora: {r: ...}`)."""
    parts = tuple(loc[-1].split("."))
    return len(parts) > 1 and all(parts) and parts[-1] in _fields_at(loc[:-1] + parts[:-1])


# How YAML 1.1 spells the keys it reads as something other than text, to find the line of one.
_SPELT = {True: ("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"),
          False: ("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), None: ("~", "null", "Null", "NULL", "")}


def _non_text_key(parent: tuple[str, ...], key: Any, source: str, lines: dict[tuple[str, ...], int],
                  overrides: dict[tuple[str, ...], str]) -> str:
    """The error for a key YAML read as a boolean, a number or nothing (`yes:`, `1:`, `~:`), at its own line."""
    spellings = _SPELT.get(key, ()) if isinstance(key, bool) or key is None else (str(key),)
    at = next((parent + (s,) for s in spellings if parent + (s,) in lines), parent)
    inside = f" under '{'.'.join(parent)}'" if parent else ""
    kind = ("a boolean" if isinstance(key, bool) else "null" if key is None else
            "a number" if isinstance(key, (int, float)) else f"a {type(key).__name__}")
    return (f"{_where(at, source, lines, overrides)}: the key {key!r}{inside} is read as {kind}, not text: YAML reads "
            "yes/no, on/off and true/false as booleans, ~ and null as null, and digits as numbers (and no key of a "
            "config is spelt so)")


# Keys as Hugging Face's TrainingArguments and training scripts name them, and ours: closeness of spelling offered
# `training.logging_steps` for `learning_rate`, and nothing for `model_name_or_path`.
_OTHER_TOOLS_NAMES = {
    ("training", "learning_rate"): "lr", ("training", "lr_scheduler_type"): "lr_scheduler",
    ("training", "num_train_epochs"): "num_epochs", ("training", "per_device_train_batch_size"): "per_device_batch_size",
    ("model", "model_name_or_path"): "path", ("model", "name"): "path", ("model", "torch_dtype"): "dtype",
    ("data", "validation"): "val", ("data", "eval"): "val", ("data", "train_file"): "train",
    ("data", "validation_file"): "val", ("data", "eval_file"): "val",
    # TRL's GRPOConfig: a config carried over from it was offered the nearest spelling (num_generations: max_new_tokens)
    ("grpo", "num_generations"): "group_size", ("grpo", "max_completion_length"): "max_new_tokens",
    ("grpo", "epsilon"): "epsilon_low", ("grpo", "reward_weights"): "rewards",
}

_TYPE_NAMES = {
    "int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer", "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false", "bool_type": "true or false", "string_type": "a string",
    "list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping",
}


def _where(loc: tuple[str, ...], source: str, lines: dict[tuple[str, ...], int],
           overrides: dict[tuple[str, ...], str]) -> str:
    """Where the value at `loc` came from: the override that set it, else its (or its section's) YAML line.

    An override replaces everything under its key, so the longest one above `loc` wins over any YAML line.
    A problem with a whole section blames the overrides inside it, and its YAML line when the file has one.
    """
    above = [key for key in overrides if loc[:len(key)] == key]
    if above:
        return f"{overrides[max(above, key=len)]} (override)"
    inside = [text for key, text in overrides.items() if key[:len(loc)] == loc]
    line = lines.get(loc) or next((lines[loc[:i]] for i in range(len(loc) - 1, 0, -1) if loc[:i] in lines), None)
    if inside:
        named = f"{', '.join(inside)} ({'override' if len(inside) == 1 else 'overrides'})"
        return f"{source}:{lines[loc]} with {named}" if loc in lines else named
    return f"{source}:{line}" if line else source


def _where_keys(keys: tuple[str, ...], source: str, lines: dict[tuple[str, ...], int],
                overrides: dict[tuple[str, ...], str]) -> str:
    """Where each of `keys` that the file or an override sets came from, in order (`c.yaml:58, c.yaml:40`); '' when
    none is set (their defaults conflict)."""
    found: list[str] = []
    for loc in (tuple(key.split(".")) for key in keys):
        if loc in lines or any(loc[:len(k)] == k for k in overrides):
            if (place := _where(loc, source, lines, overrides)) not in found:
                found.append(place)
    return ", ".join(found)


def _format_errors(err: ValidationError, source: str, lines: dict[tuple[str, ...], int],
                   overrides: dict[tuple[str, ...], str]) -> str:
    out = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        dotted = ".".join(loc)
        where = _where(loc, source, lines, overrides)
        if e["type"] == "extra_forbidden" and _dotted_key(loc):
            # `lora.r: 8` under model: was "unknown key 'model.lora.r'", a key that exists, and no word of nesting.
            head, rest = loc[-1].split(".", 1)
            out.append(f"{where}: unknown key '{loc[-1]}'{' under ' + repr('.'.join(loc[:-1])) if loc[:-1] else ''}: "
                       f"a YAML config nests its keys rather than dotting them; write '{head}:' and '{rest}: ...' "
                       "indented under it (only key=value overrides are dotted)")
        elif e["type"] == "extra_forbidden" and not loc[-1].isprintable():
            # a byte-order mark where two files were joined (`cat a.yaml b.yaml`), a zero-width space pasted with a
            # key, a no-break space indenting it: "unknown key 'model' (did you mean 'model'?)" showed none of them
            bare = drop_invisible(loc[-1]).replace("\xa0", " ").strip()
            meant = ("; it starts with a no-break space (\\xa0), which YAML reads as part of the key, not as its "
                     "indentation: indent with spaces" if loc[-1].startswith("\xa0") else
                     f"; it is '{'.'.join(loc[:-1] + (bare,))}' with a character no one sees: retype the key"
                     if bare in _fields_at(loc[:-1]) else "")
            out.append(f"{where}: unknown key {show_text(dotted)}: it holds invisible or odd spacing characters{meant}")
        elif e["type"] == "extra_forbidden":
            valid = _fields_at(loc[:-1])
            close = [_OTHER_TOOLS_NAMES[loc]] if loc in _OTHER_TOOLS_NAMES else difflib.get_close_matches(
                loc[-1], valid, n=1, cutoff=0.5)
            # `max_steps` at the top, `model.lr`: a key of another section was offered the nearest spelling here
            elsewhere = [k for k in _all_keys() if k[-1] == loc[-1] and k != loc] if loc[-1] not in valid else []
            named = " or ".join(f"'{'.'.join(k)}'" for k in elsewhere)
            hint = (f"did you mean {named}? It is a key of another section" if 0 < len(elsewhere) <= 3 else
                    f"did you mean '{'.'.join(loc[:-1] + (close[0],))}'?" if close else f"valid keys here: {', '.join(valid)}")
            out.append(f"{where}: unknown key '{dotted}' ({hint})")
        elif e["type"] == "invalid_key":
            out.append(_non_text_key(tuple(str(p) for p in e["loc"][:-1]), e["input"], source, lines, overrides))
        elif e["type"] == "value_error" and isinstance(conflict := e["ctx"]["error"], KeysConflict):
            # `data.num_workers: 2` at line 40 and `sample_cache_mb: 100` at 58 were both blamed on `data:` at line 30
            out.append(f"{_where_keys(conflict.keys, source, lines, overrides) or where}: {conflict}")
        elif e["type"] == "finite_number":
            out.append(f"{where}: '{dotted}' must be a finite number, got {e.get('input')!r}")
        elif e["type"] in _TYPE_NAMES:
            # `training.output_dir=` is YAML's null: "got None" alone did not say where a None came from
            empty = e.get("input") is None and overrides.get(loc, "").endswith("=")
            keys = _fields_at(loc) if e["type"] == "model_type" else []  # `training.lr=1e-4`: which keys it holds
            # As typed, with what YAML read it as: `training.seed=2024-01-01` said "got datetime.date(2024, 1, 1)"
            got = (_as_typed(loc, e.get("input"), lines, overrides, as_text=e["type"] == "string_type")
                   if e["type"] == "string_type" or isinstance(e.get("input"), datetime.date) else None)
            out.append(f"{where}: '{dotted}' must be {_TYPE_NAMES[e['type']]}"
                       + (f" of {', '.join(keys)}" if keys else "") + f", got {got or repr(e.get('input'))}"
                       + (" (an override with nothing after '=' sets null)" if empty else "")
                       # `zoom_containers=a,b` or `target_modules: q_proj`: one text, where YAML writes a list so
                       + (f" (a list is written [{', '.join(map(str.strip, e['input'].split(',')))}], or one item a "
                          "line after '- ')" if e["type"] == "list_type" and isinstance(e.get("input"), str) else ""))
        else:
            # A validator's own message says what it got; pydantic's bounds ("greater than 0") do not.
            msg = str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"]
            if e["type"] not in ("value_error", "too_short", "too_long") and not isinstance(e.get("input"), dict):
                typed = (_as_typed(loc, e.get("input"), lines, overrides, as_text=False)
                         if e["type"] in ("literal_error", "enum") else None)
                msg += f", got {typed or repr(e.get('input'))}"
            out.append(f"{where}: '{dotted}': {msg}" if dotted else f"{where}: {msg}")
    return "\n".join(out)


def _as_typed(loc: tuple[str, ...], value: Any, lines: dict[tuple[str, ...], int],
              overrides: dict[tuple[str, ...], str], as_text: bool = True) -> str | None:
    """A value where text belongs as the user typed it, with what YAML read it as (`no` as false, `2024-01-01` as a
    date, `~` as null) and, `as_text`, the quoting that keeps it text; None when it was not typed as a plain scalar,
    or is YAML's own spelling of what it was read as (`null`, `false`). "got False" named a value no one wrote."""
    if isinstance(value, str) or not isinstance(value, (bool, int, float, datetime.date, type(None))):
        return None
    typed = overrides[loc].split("=", 1)[1].strip() if loc in overrides else getattr(lines, "plain", {}).get(loc)
    read = ("true" if value is True else "false" if value is False else "null" if value is None
            else "a date" if isinstance(value, datetime.date) else "a number")
    if not typed or typed[0] in "'\"[{" or typed.lower() == read:
        return None
    return f"{typed} (YAML reads an unquoted {typed} as {read}" + (f"; write \"{typed}\" to mean the text)" if as_text else ")")


def _apply_override(data: dict[str, Any], path: tuple[str, ...], value: Any) -> list[tuple[str, ...]]:
    """Set `path` in `data` to `value` and return the keys it replaced. A mapping merges into the mapping already
    there, key by key, as Hydra's `section={key: value}` does: replacing it reset the section's other keys to their
    defaults (`training={max_steps: 3}` trained into runs/bbu-3b, not the config's output_dir)."""
    node, replaced = data, None
    for i, p in enumerate(path[:-1]):
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            replaced = replaced or (path[:i + 1] if p in node else None)  # `seed=5 seed.x=3`: the second set seed
            nxt = {}
            node[p] = nxt
        node = nxt
    old = node.get(path[-1])
    if isinstance(value, dict) and isinstance(old, dict):
        # a key YAML read as no text (`{1: 2}`) stays one, for the error that names it (`_non_text_key`)
        return [path + tuple(map(str, k)) for key, inner in value.items()
                for k in _apply_override(old, (key,), inner)]
    node[path[-1]] = value
    return [replaced or path]


def _section_no_mapping(data: dict[str, Any], path: tuple[str, ...], value: Any, lines: dict[tuple[str, ...], int],
                        given: dict[tuple[str, ...], str]) -> tuple[tuple[str, ...], Any] | None:
    """The section above the override `path` (or at it, for a mapping `value`) that the config file gives as no mapping
    (`model: [a]`, `training.lr: 3`), with what it holds; None when there is none. Setting a key inside it replaced
    the file's value, so `model.path=...` ran every other model key at its default and the file's error went unsaid."""
    node: Any = data
    for i in range(len(path) - (0 if isinstance(value, dict) else 1)):
        if not isinstance(node, dict) or path[i] not in node:
            return None
        node, loc = node[path[i]], path[:i + 1]
        if (node is not None and not isinstance(node, dict) and loc in lines and _fields_at(loc)
                and not any(loc[:len(key)] == key for key in given)):  # an earlier override set it: the later wins
            return loc, node
    return None


# Plain scalars YAML 1.1 reads as numbers in another base: a leading 0 as octal (`save_steps: 010` was 8), 0x as hex, 0b
# as binary, and digits joined by ':' as base 60 (`1:30` was 90). No key of a config means one of them.
_OTHER_BASE = re.compile(r"[-+]?(0b[0-1_]+|0[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?)")


def _other_base(text: str) -> tuple[int, str] | None:
    """The first plain scalar of the YAML `text` that YAML 1.1 reads as a number in another base: (line, as typed)."""
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, yaml.ScalarToken) and token.plain and _OTHER_BASE.fullmatch(token.value):
            return token.start_mark.line + 1, token.value
    return None


def _other_base_error(where: str, typed: str) -> ConfigError:
    """The error for `typed`, a number YAML 1.1 reads in another base than the decimal one it looks like."""
    return ConfigError(f"{where}: '{typed}' is read by YAML as {yaml.safe_load(typed)!r} (YAML 1.1 reads a leading 0 "
                       "as octal, 0x as hex, 0b as binary and digits joined by ':' as base 60); write the number in "
                       "decimal digits without a leading 0, or quote it if it is text")


def _dropped_comment(raw: str, value: Any) -> bool:
    """Whether YAML read part of an override's `raw` text as a comment: a '#' typed that no string of `value` holds."""
    def hashes(node: Any) -> int:
        if isinstance(node, str):
            return node.count("#")
        if isinstance(node, dict):
            return sum(hashes(k) + hashes(v) for k, v in node.items())
        return sum(map(hashes, node)) if isinstance(node, list) else 0

    return raw.count("#") > hashes(value)


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`["training.lr.llm=1e-5", ...]` -> `[("training.lr.llm", 1e-05), ...]` (values parsed as YAML)."""
    out = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. training.num_epochs=3)")
        key, raw = item.split("=", 1)
        if not all(key.strip().split(".")):
            raise ConfigError(f"override '{item}': '{key.strip()}' is not a dotted key (e.g. training.num_epochs=3)")
        if bad := yaml.reader.Reader.NON_PRINTABLE.search(raw):  # YAML's message: a position in "<unicode string>"
            char = bad.group()
            what = (f"byte 0x{ord(char) - 0xDC00:02x}, which is not UTF-8" if 0xDC80 <= ord(char) <= 0xDCFF
                    else f"control character {char!r}")  # Python keeps an argument's stray bytes as U+DC80..U+DCFF
            raise ConfigError(f"override '{key.strip()}': {what}, at character {bad.start() + 1} of its value; a value "
                              "is text")
        try:
            value = load_yaml(raw, f"override '{key.strip()}'")[0] if raw.strip() else None
        except YamlError as e:
            raise ConfigError(str(e)) from None
        if found := _other_base(raw):
            raise _other_base_error(f"override '{item}'", found[1])
        if _dropped_comment(raw, value):
            # `training.output_dir=runs/lr 1e-4 #2` trained into runs/lr 1e-4, and `data.val=#2` without validation.
            raise ConfigError(f"override '{item}': YAML reads a '#' at the start or after a space, and all that "
                              f"follows it, as a comment, so the value would be {value!r}; quote the value to keep "
                              f"the '#' ('{key.strip()}=\"...\"')")
        # YAML 1.1 reads an unquoted 1e-5 as a string; users mean a number. A quoted value is text, as in a file: the
        # way out the type errors name (`training.output_dir="1e-4"`) was read as 0.0001 too.
        if isinstance(value, str) and not raw.strip().startswith(("'", '"')):
            try:
                value = float(value) if any(c in value for c in ".eE") else value
            except ValueError:
                pass
        out.append((key.strip(), value))
    return out


CONFIG_FILE = "bbuvl.yaml"  # the run config, in every checkpoint `bbuvl train` writes
# The shipped configs are about 11 KB with every key and its comments. A file far larger is no config (a dataset, a
# log, /dev/zero given by mistake): it was read whole into memory, and YAML parses about 50 KB a second.
MAX_CONFIG_BYTES = 256 * 1024


def read_config_text(path: str | Path) -> str:
    """The text of the config file `path`, read up to MAX_CONFIG_BYTES; ConfigError naming the file otherwise."""
    try:
        # Not blocking on open: a named pipe no process writes to was waited on forever; one that is written to, as
        # `bbuvl train <(make_config)` gives, is read as before (blocking again once open).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
            pipe = stat.S_ISFIFO(os.fstat(fh.fileno()).st_mode)
    except IsADirectoryError:
        saved = Path(path) / CONFIG_FILE  # a checkpoint given where its config belongs
        raise ConfigError(f"{path}: a folder, not a YAML config" + (f"; the config that checkpoint trained with is "
                          f"{saved}" if saved.is_file() else "")) from None
    except OSError as e:
        # `bbuvl train training.seed=1 run.yaml`: an override where the config belongs
        hint = "; the config file comes before the key=value overrides" if "=" in Path(path).name else ""
        raise ConfigError(f"{path}: cannot read config: {e.strerror or e}{hint}") from None
    if not raw and pipe:
        raise ConfigError(f"{path}: a pipe no process writes to (or wrote nothing); give the YAML config file")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB, which no config is (configs/base.yaml, "
                          "every key with its comments, is about 11 KB); is this a YAML config?")
    try:
        text = raw.decode(bom_encoding(raw) or "utf-8")  # a config saved as UTF-16 (Notepad's "Unicode") too
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1  # a Latin-1 comment in an edited config is one line to fix
        # a Chinese comment or path saved by Windows' default ("ANSI"), as data files are (data/text.py gbk_hint)
        why = gbk_hint(raw) or "; is this a YAML config?"
        raise ConfigError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start}){why}") from None
    # YAML's own message for a control character names neither line nor column, only a position in "<unicode string>".
    if bad := yaml.reader.Reader.NON_PRINTABLE.search(text):
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        raise ConfigError(f"{path}:{line}: control character {bad.group()!r} at column {column}, which YAML does not "
                          "allow; is this a YAML config?")
    return text


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (defaults when `path` is None), apply `key.sub=value` overrides, validate."""
    return load_located_config(path, overrides)[0]


def load_located_config(path: str | Path | None = None,
                        overrides: list[str] | None = None) -> tuple[Config, ConfigOrigin]:
    """`load_config`, and where each value came from: for errors found later (a batch budget) to name file:line."""
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    if path:
        text = read_config_text(path)
        try:
            data, lines = load_yaml(text, str(path))
        except YamlError as e:
            raise ConfigError(str(e)) from None
        if found := _other_base(text):
            raise _other_base_error(f"{path}:{found[0]}", found[1])
        if data is None:  # `{}` still means every default: an empty file is more often a cut-short or wrong one
            raise ConfigError(f"{path}: holds no settings (the file is empty or only comments), so every key would take "
                              "its default (a 3B model from the hub, data/train.jsonl, runs/bbu-3b); write the keys "
                              "(configs/base.yaml lists them all), or `{}` to mean every default")
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    given: dict[tuple[str, ...], str] = {}
    written = _leaf_keys(data)  # the file's keys, before any override replaces one
    nulled: list[tuple[tuple[str, ...], str]] = []
    # In order, as Hydra applies them: of two overrides of one key the later wins, and a mapping merges into its section.
    for (key, value), text in zip(parse_overrides(overrides or []), overrides or []):
        if value is None and _fields_at(tuple(key.split("."))):
            nulled.append((tuple(key.split(".")), text.strip()))
        if (broken := _section_no_mapping(data, tuple(key.split(".")), value, lines, given)) is not None:
            loc, held = broken
            raise ConfigError(f"{source}:{lines[loc]}: '{'.'.join(loc)}' must be a mapping of "
                              f"{', '.join(_fields_at(loc))}, got {held!r} (the override '{text.strip()}' sets a key "
                              "inside it)")
        for path in _apply_override(data, tuple(key.split(".")), value):
            for earlier in [k for k in given if k[:len(path)] == path]:
                del given[earlier]  # replaced by this one
            given[path] = text.strip()
    for section, text in nulled:
        _say_section_reset(section, text, data, written, source, lines)
    try:
        return Config.model_validate(data), ConfigOrigin(source, lines, given)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source, lines, given)) from None


# Keys whose defaults name no run of this project (a 3B model from the hub, data/train.jsonl, runs/bbu-3b): a section
# reset that drops one of them from the file cannot be the run meant.
_PLACEHOLDER_KEYS = ("model.path", "data.train", "data.val", "data.teachers", "training.output_dir")
log = logging.getLogger("bbuvl.config")


def _leaf_keys(node: Any, at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The dotted paths of the values a mapping holds, a nested mapping's by its keys (`training.lr.llm`)."""
    if not isinstance(node, dict) or (not node and at):
        return [at] if at else []
    return [leaf for k, v in node.items() for leaf in _leaf_keys(v, (*at, str(k)))]


def _held(data: dict[str, Any], path: tuple[str, ...]) -> bool:
    """Whether `data` holds a value at `path` after the overrides."""
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _say_section_reset(section: tuple[str, ...], text: str, data: dict[str, Any], written: list[tuple[str, ...]],
                       source: str, lines: dict[tuple[str, ...], int]) -> None:
    """Refuse, or warn of, the override `section=null` followed by a key set inside it, which returns every other key of
    the section to its default: the keys the file set there were dropped without a word (`training=null
    training.max_steps=3` trained into runs/bbu-3b with the default batch, LRs and precision). A section still null
    after the overrides is refused as no mapping, as before."""
    if not isinstance(_get(data, section), dict):
        return
    dropped = [k for k in written if k[:len(section)] == section and len(k) > len(section) and not _held(data, k)]
    if not dropped:
        return  # the file set nothing there: the defaults were the section's already
    name = ".".join(section)
    keys = ", ".join(".".join(k) + (f" (line {lines[k]})" if k in lines else "") for k in dropped)
    said = (f"{text} (override): null returns every key of the section '{name}' to its default, dropping the "
            f"{len(dropped)} key{'s' if len(dropped) > 1 else ''} {source} sets in it: {keys}")
    if lost := [".".join(k) for k in dropped if ".".join(k) in _PLACEHOLDER_KEYS]:
        raise ConfigError(f"{said}; {', '.join(lost)} would take the default, which names no run of yours. To change "
                          f"some of its keys, leave '{text}' out and set them ({name}.KEY=VALUE); to start the section "
                          f"from its defaults, set {', '.join(lost)} again after it")
    # Every process of a run under torchrun reads the config: the first says it (train/all_ranks.py `first_process`)
    if int(os.environ.get("RANK", "0")) == 0:
        log.warning("%s. To change some of its keys and keep the rest, leave '%s' out and set them (%s.KEY=VALUE)",
                    said, text, name)


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path` in `data`, None where there is none."""
    node: Any = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def read_run_config(directory: str | Path) -> Config:
    """The config a checkpoint was trained with (its CONFIG_FILE)."""
    if not (Path(directory) / CONFIG_FILE).exists() and (what := not_a_checkpoint(Path(directory))):
        raise ConfigError(what)
    return load_config(Path(directory) / CONFIG_FILE)


def absent_keys(cfg: BaseModel, prefix: str = "") -> list[str]:
    """The dotted keys a config read from YAML did not hold, each filled with this version's default (a section absent
    whole is one key). A checkpoint's bbuvl.yaml holds every key (`dump_config`), so those it lacks are the keys added
    since the bbu-vl that wrote it: what that version built without them is not what their defaults build now."""
    absent = []
    for name in type(cfg).model_fields:
        value = getattr(cfg, name)
        if name not in cfg.model_fields_set:
            absent.append(prefix + name)
        elif isinstance(value, BaseModel):
            absent += absent_keys(value, f"{prefix}{name}.")
    return absent


def holds_key(cfg: Config, key: str) -> bool:
    """Whether the YAML `cfg` was read from holds the dotted `key` (not filled with a default: `absent_keys`)."""
    section, name = key.rsplit(".", 1) if "." in key else ("", key)
    node: BaseModel = cfg
    for part in section.split(".") if section else []:
        if part not in node.model_fields_set:
            return False
        node = getattr(node, part)
    return name in node.model_fields_set


def not_a_checkpoint(path: Path) -> str | None:
    """What `path` is when it holds no model at all (a run's folder, a dataset folder), else None."""
    if any((path / name).exists() for name in ("config.json", "adapter_config.json", CONFIG_FILE)):
        return None
    if (path / "final").is_dir() or any(path.glob("checkpoint-*")):  # a run's training.output_dir
        return (f"{path}: a training run's folder, not a checkpoint: give its final/ (or a checkpoint-N/) "
                "folder")
    if any(path.glob("*.jsonl")):
        return f"{path}: a dataset folder ({', '.join(sorted(p.name for p in path.glob('*.jsonl'))[:3])}), not a checkpoint"
    if path.is_dir() and not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        return f"{path}: holds no model ({CONFIG_FILE}, config.json or weights): not a checkpoint folder"
    return None


def dump_config(cfg: Config) -> str:
    """The config as YAML, every key present (what `config print` shows and checkpoints store)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def resolve_frame(config: str | Path | None = None, checkpoint: str | Path | None = None,
                  min_pixels: int | None = None, max_pixels: int | None = None) -> CoordinateContract:
    """The image frame a command should use: a checkpoint's contract or a run config's, then explicit bounds.

    One source at most (`config` or `checkpoint`); `min_pixels`/`max_pixels` override its bounds, and Qwen's
    defaults apply when neither is given, so a user never types the same numbers twice.
    """
    if config is not None and checkpoint is not None:
        raise ValueError("give --config or --checkpoint, not both")
    frame = CoordinateContract()
    if checkpoint is not None:
        # A run's folder, given for its final/, was "coordinate_contract.json: missing; this checkpoint was not saved by
        # bbuvl train" (data stats and convert), where predict names what it is and the folder to give.
        if not (Path(checkpoint) / CONTRACT_FILE).exists() and (what := not_a_checkpoint(Path(checkpoint))):
            raise ValueError(what)
        frame = CoordinateContract.load(checkpoint)
    elif config is not None:
        model = load_config(config).model
        try:
            family = model.resolve_family()
        except (OSError, ValueError) as e:  # a hub id before the download: the family alone sets the box convention
            raise type(e)(f"{config}: model.family auto reads the family from model.path's config.json: {e}; or set "
                          f"model.family (one of {', '.join(FAMILIES)}), which needs no model") from None
        frame = model.model_copy(update={"family": family.model_type}).frame()
    return replace(frame, min_pixels=frame.min_pixels if min_pixels is None else min_pixels,
                   max_pixels=frame.max_pixels if max_pixels is None else max_pixels)
