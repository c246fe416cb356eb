"""Batches: padded rows (left or right) or packed rows with samples kept isolated, as one typed `Batch`.

Both collators fill the same `Batch` so that the loss code never branches on the layout; packed rows (one row,
no attention mask) are the only layout measured to isolate samples, see docs/design.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import torch

from bbuvl.encode.chat import IGNORE_INDEX, NO_COORDINATE, SPAN_NONE, SPAN_STUDENT, EncodedSample
from bbuvl.encode.positions import mrope_positions

log = logging.getLogger(__name__)
# The meta key of a stand-in sample: a place past the epoch's end that evens out the processes' last turn
# (train/stand_ins.py), trained at zero weight
STAND_IN = "stand_in"


@dataclass
class Batch:
    """Collated samples: what `BBUVLModel.forward` and `detect` take (model/vlm.py).

    B rows of length L (padded: one sample a row; packed: B = 1, the samples one after another) holding S samples.
    """

    input_ids: torch.Tensor  # [B, L]
    labels: torch.Tensor  # [B, L], IGNORE_INDEX where unsupervised
    span_ids: torch.Tensor  # [B, L], SPAN_* of each token (which LM loss it counts in)
    mm_token_type_ids: torch.Tensor  # [B, L], 1 at image pads
    sample_index: torch.Tensor  # [B, L], the sample a token belongs to (-1 for padding)
    # [3, B, L] padded (mRoPE's temporal, height, width rows); [4, 1, L] packed: a text row restarting per
    # sample, then each sample's mRoPE rows
    position_ids: torch.Tensor
    det_vision_mask: torch.Tensor  # [B, L], the student image's pads (what the detection head reads, `head_masks`)
    det_text_mask: torch.Tensor  # [B, L], the prompt's text before the student's answer
    pixel_values: torch.Tensor  # [P, D], every image's patches in sample order
    image_grid_thw: torch.Tensor  # [num_images, 3], in sample order
    det_grid_hw: torch.Tensor  # [S, 2], each student image's merged token grid
    det_image_index: torch.Tensor  # [S], each student image's index in image_grid_thw (its sample's last image)
    det_boxes: list[torch.Tensor]  # S x [N_s, 4], normalised xyxy
    det_caption_ids: list[list[torch.Tensor]]  # S x N_s label token ids
    meta: list[dict[str, Any]]  # S, what a dump names (image paths)
    # [B, L], 4 * box + coordinate at the student answers' box-number tokens, NO_COORDINATE elsewhere (encode/chat.py)
    coord_marks: torch.Tensor
    coord_boxes: list[torch.Tensor]  # S x [N_s, 4], the student answers' boxes in their order, normalised
    attention_mask: torch.Tensor | None = None  # [B, L] padded (1 = token); None packed
    # Samples the collator left out of this batch for its budgets. Counted where the batch is used, since a loader's
    # worker processes each hold their own copy of the collator and its counter.
    dropped: int = 0
    # The batch holds a stand-in alone: a process's turn past the epoch's end, run for the collectives and weighed
    # zero (train/stand_ins.py); a stand-in beside real samples is left out of their batch.
    stand_in: bool = False

    def __len__(self) -> int:
        """Samples in the batch (HF Trainer refuses a batch whose length is 0)."""
        return len(self.meta)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Batch":
        def move(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return fn(v)
            if isinstance(v, list):
                return [move(x) for x in v]
            return v

        return replace(self, **{f.name: move(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        """The batch with every tensor on `device` (lists of tensors too); accelerate's loaders call this."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":
        """The batch in pinned host memory (DataLoader's pin_memory calls this)."""
        return self._map(lambda t: t.pin_memory())


@dataclass
class BudgetCounter:
    """Samples dropped from batches for exceeding a token budget (reported, never silent)."""

    dropped: int = 0
    seen: int = 0


def real_samples(samples: list[EncodedSample]) -> tuple[list[EncodedSample], bool]:
    """The samples of a batch that are no stand-ins (`STAND_IN` in their meta), and False; a batch of stand-ins alone:
    its first, and True (`Batch.stand_in`)."""
    real = [s for s in samples if not s.meta.get(STAND_IN)]
    return (real, False) if real else (samples[:1], True)


def _within_budget(samples: list[EncodedSample], max_vision: int, max_tokens: int | None,
                   counter: BudgetCounter) -> list[EncodedSample]:
    kept, vision, tokens = [], 0, 0
    for s in samples:
        v, t = int(s.mm_token_type_ids.sum()), int(s.input_ids.numel())
        if kept and (vision + v > max_vision or (max_tokens is not None and tokens + t > max_tokens)):
            counter.dropped += 1
            continue
        kept.append(s)
        vision, tokens = vision + v, tokens + t
    counter.seen += len(samples)
    if len(kept) < len(samples):
        log.warning("batch over budget: dropped %d of %d samples (%d so far by this process)", len(samples) - len(kept),
                    len(samples), counter.dropped)
    return kept


def head_masks(sample: EncodedSample, merge: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the detection head reads from one sample: `(vision [L], text [L], grid_hw [2])`.

    vision: the student (last) image's pad tokens; text: the non-image tokens before the student's answer
    (the answer itself would hand the head its targets); grid_hw: the student image's merged token grid.
    """
    is_image = sample.mm_token_type_ids.bool()
    t, h, w = sample.image_grid_thw[-1].tolist()
    n_student = t * (h // merge) * (w // merge)
    vision = torch.zeros_like(is_image)
    vision[torch.nonzero(is_image).flatten()[-n_student:]] = True
    answer = torch.nonzero(sample.span_ids == SPAN_STUDENT).flatten()
    before = torch.arange(is_image.numel()) < (int(answer[0]) if answer.numel() else is_image.numel())
    return vision, ~is_image & before, torch.tensor([h // merge, w // merge])


def _common(samples: list[EncodedSample], masks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """The fields that do not depend on the layout."""
    return {
        "pixel_values": torch.cat([s.pixel_values for s in samples]),
        "image_grid_thw": torch.cat([s.image_grid_thw for s in samples]),
        "det_grid_hw": torch.stack([m[2] for m in masks]),
        "det_image_index": torch.tensor([len(s.image_grid_thw) for s in samples]).cumsum(0) - 1,
        "det_boxes": [s.det_boxes for s in samples],
        "det_caption_ids": [s.det_caption_ids for s in samples],
        "meta": [s.meta for s in samples],
        "coord_boxes": [s.coord_boxes for s in samples],
    }


def marks_of(sample: EncodedSample) -> torch.Tensor:
    """A sample's coordinate marks `[L]` (all NO_COORDINATE when it has none: inference, or the losses off)."""
    if sample.coord_marks is None:
        return torch.full_like(sample.input_ids, NO_COORDINATE)
    return sample.coord_marks


@dataclass
class PaddedCollator:
    """Pads samples to the longest one, on the right (training) or the left (generation)."""

    pad_token_id: int
    image_token_id: int
    padding_side: str = "right"
    merge: int = 2
    max_vision_tokens_per_batch: int = 1 << 30
    budget: BudgetCounter = field(default_factory=BudgetCounter)

    def __call__(self, samples: list[EncodedSample]) -> Batch:
        samples, stand_in = real_samples(samples)
        given = len(samples)
        samples = _within_budget(samples, self.max_vision_tokens_per_batch, None, self.budget)
        B, L = len(samples), max(s.input_ids.numel() for s in samples)
        masks = [head_masks(s, self.merge) for s in samples]
        batch = {
            "input_ids": torch.full((B, L), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros(B, L, dtype=torch.long),
            "labels": torch.full((B, L), IGNORE_INDEX, dtype=torch.long),
            "span_ids": torch.full((B, L), SPAN_NONE, dtype=torch.long),
            "mm_token_type_ids": torch.zeros(B, L, dtype=torch.long),
            "sample_index": torch.full((B, L), -1, dtype=torch.long),
            "position_ids": torch.zeros(3, B, L, dtype=torch.long),
            "det_vision_mask": torch.zeros(B, L, dtype=torch.bool),
            "det_text_mask": torch.zeros(B, L, dtype=torch.bool),
            "coord_marks": torch.full((B, L), NO_COORDINATE, dtype=torch.long),
        }
        for b, s in enumerate(samples):
            n = s.input_ids.numel()
            sl = slice(L - n, L) if self.padding_side == "left" else slice(0, n)
            batch["input_ids"][b, sl] = s.input_ids
            batch["attention_mask"][b, sl] = 1
            batch["labels"][b, sl] = s.labels
            batch["span_ids"][b, sl] = s.span_ids
            batch["mm_token_type_ids"][b, sl] = s.mm_token_type_ids
            batch["coord_marks"][b, sl] = marks_of(s)
            batch["sample_index"][b, sl] = b
            batch["position_ids"][:, b, sl] = mrope_positions(s.input_ids, s.image_grid_thw, self.image_token_id, self.merge)
            batch["det_vision_mask"][b, sl], batch["det_text_mask"][b, sl] = masks[b][0], masks[b][1]
        return Batch(**batch, **_common(samples, masks), dropped=given - B, stand_in=stand_in)


@dataclass
class PackedCollator:
    """Concatenates samples into one row; each restarts its positions, so attention stays within a sample."""

    pad_token_id: int
    image_token_id: int
    merge: int = 2
    max_tokens: int = 8192
    max_vision_tokens_per_batch: int = 1 << 30
    budget: BudgetCounter = field(default_factory=BudgetCounter)

    def __call__(self, samples: list[EncodedSample]) -> Batch:
        samples, stand_in = real_samples(samples)
        given = len(samples)
        samples = _within_budget(samples, self.max_vision_tokens_per_batch, self.max_tokens, self.budget)
        masks = [head_masks(s, self.merge) for s in samples]
        text = torch.cat([torch.arange(s.input_ids.numel()) for s in samples])
        rope = torch.cat([mrope_positions(s.input_ids, s.image_grid_thw, self.image_token_id, self.merge)
                          for s in samples], dim=1)
        return Batch(
            input_ids=torch.cat([s.input_ids for s in samples])[None],
            labels=torch.cat([s.labels for s in samples])[None],
            span_ids=torch.cat([s.span_ids for s in samples])[None],
            mm_token_type_ids=torch.cat([s.mm_token_type_ids for s in samples])[None],
            coord_marks=torch.cat([marks_of(s) for s in samples])[None],
            sample_index=torch.cat([torch.full((s.input_ids.numel(),), i) for i, s in enumerate(samples)])[None],
            position_ids=torch.cat([text[None], rope], dim=0)[:, None, :],  # [4, 1, L]
            det_vision_mask=torch.cat([m[0] for m in masks])[None],
            det_text_mask=torch.cat([m[1] for m in masks])[None],
            **_common(samples, masks),
            dropped=given - len(samples),
            stand_in=stand_in,
        )
