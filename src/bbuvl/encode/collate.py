"""Batches: padded rows (left or right) or packed rows with samples kept isolated.

Both collators return the same keys so that the loss code never branches on the layout:
input_ids / labels / span_ids / mm_token_type_ids / sample_index: [B, L]; position_ids: [3, B, L]
(padded, with attention_mask [B, L]) or [4, 1, L] (packed: a text row restarting per sample + each sample's
mRoPE rows, no attention mask — the only layout measured to isolate samples, see docs/design.md);
pixel_values [P, D] and image_grid_thw [num_images, 3] concatenated in sample order; det_vision_mask /
det_text_mask [B, L] (what the detection head reads, see `head_masks`), det_grid_hw [S, 2]; det_boxes,
det_caption_ids, meta: per-sample lists. `sample_index` is the sample a token belongs to (-1 for padding).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from bbuvl.encode.chat import IGNORE_INDEX, SPAN_NONE, SPAN_STUDENT
from bbuvl.encode.positions import mrope_positions

log = logging.getLogger(__name__)


def to_device(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """The batch with every tensor on `device` (lists of tensors too)."""
    def move(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v.to(device)
        if isinstance(v, list):
            return [move(x) for x in v]
        return v

    return {k: move(v) for k, v in batch.items()}


@dataclass
class BudgetCounter:
    """Samples dropped from batches for exceeding a token budget (reported, never silent)."""

    dropped: int = 0
    seen: int = 0


def _within_budget(samples: list[dict], max_vision: int, max_tokens: int | None, counter: BudgetCounter) -> list[dict]:
    kept, vision, tokens = [], 0, 0
    for s in samples:
        v, t = int(s["mm_token_type_ids"].sum()), int(s["input_ids"].numel())
        if kept and (vision + v > max_vision or (max_tokens is not None and tokens + t > max_tokens)):
            counter.dropped += 1
            continue
        kept.append(s)
        vision, tokens = vision + v, tokens + t
    counter.seen += len(samples)
    if len(kept) < len(samples):
        log.warning("batch over budget: dropped %d of %d samples (%d dropped so far)", len(samples) - len(kept),
                    len(samples), counter.dropped)
    return kept


def head_masks(sample: dict, merge: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the detection head reads from one sample: `(vision [L], text [L], grid_hw [2])`.

    vision: the student (last) image's pad tokens; text: the non-image tokens before the student's answer
    (the answer itself would hand the head its targets); grid_hw: the student image's merged token grid.
    """
    is_image = sample["mm_token_type_ids"].bool()
    t, h, w = sample["image_grid_thw"][-1].tolist()
    n_student = t * (h // merge) * (w // merge)
    vision = torch.zeros_like(is_image)
    vision[torch.nonzero(is_image).flatten()[-n_student:]] = True
    answer = torch.nonzero(sample["span_ids"] == SPAN_STUDENT).flatten()
    before = torch.arange(is_image.numel()) < (int(answer[0]) if answer.numel() else is_image.numel())
    return vision, ~is_image & before, torch.tensor([h // merge, w // merge])


def _common(samples: list[dict], masks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    return {
        "pixel_values": torch.cat([s["pixel_values"] for s in samples]),
        "image_grid_thw": torch.cat([s["image_grid_thw"] for s in samples]),
        "det_grid_hw": torch.stack([m[2] for m in masks]),
        "det_boxes": [s["det_boxes"] for s in samples],
        "det_caption_ids": [s.get("det_caption_ids", []) for s in samples],
        "meta": [s["meta"] for s in samples],
    }


@dataclass
class PaddedCollator:
    """Pads samples to the longest one, on the right (training) or the left (generation)."""

    pad_token_id: int
    image_token_id: int
    padding_side: str = "right"
    merge: int = 2
    max_vision_tokens_per_batch: int = 1 << 30
    budget: BudgetCounter = field(default_factory=BudgetCounter)

    def __call__(self, samples: list[dict]) -> dict[str, Any]:
        samples = _within_budget(samples, self.max_vision_tokens_per_batch, None, self.budget)
        B, L = len(samples), max(s["input_ids"].numel() for s in samples)
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
        }
        for b, s in enumerate(samples):
            n = s["input_ids"].numel()
            sl = slice(L - n, L) if self.padding_side == "left" else slice(0, n)
            batch["input_ids"][b, sl] = s["input_ids"]
            batch["attention_mask"][b, sl] = 1
            batch["labels"][b, sl] = s["labels"]
            batch["span_ids"][b, sl] = s["span_ids"]
            batch["mm_token_type_ids"][b, sl] = s["mm_token_type_ids"]
            batch["sample_index"][b, sl] = b
            batch["position_ids"][:, b, sl] = mrope_positions(s["input_ids"], s["image_grid_thw"], self.image_token_id, self.merge)
            batch["det_vision_mask"][b, sl], batch["det_text_mask"][b, sl] = masks[b][0], masks[b][1]
        batch.update(_common(samples, masks))
        return batch


@dataclass
class PackedCollator:
    """Concatenates samples into one row; each restarts its positions, so attention stays within a sample."""

    pad_token_id: int
    image_token_id: int
    merge: int = 2
    max_tokens: int = 8192
    max_vision_tokens_per_batch: int = 1 << 30
    budget: BudgetCounter = field(default_factory=BudgetCounter)

    def __call__(self, samples: list[dict]) -> dict[str, Any]:
        samples = _within_budget(samples, self.max_vision_tokens_per_batch, self.max_tokens, self.budget)
        masks = [head_masks(s, self.merge) for s in samples]
        cat = lambda key: torch.cat([s[key] for s in samples])[None]  # noqa: E731
        text = torch.cat([torch.arange(s["input_ids"].numel()) for s in samples])
        rope = torch.cat([mrope_positions(s["input_ids"], s["image_grid_thw"], self.image_token_id, self.merge)
                          for s in samples], dim=1)
        batch = {
            "input_ids": cat("input_ids"),
            "labels": cat("labels"),
            "span_ids": cat("span_ids"),
            "mm_token_type_ids": cat("mm_token_type_ids"),
            "sample_index": torch.cat([torch.full((s["input_ids"].numel(),), i) for i, s in enumerate(samples)])[None],
            "position_ids": torch.cat([text[None], rope], dim=0)[:, None, :],  # [4, 1, L]
            "det_vision_mask": torch.cat([m[0] for m in masks])[None],
            "det_text_mask": torch.cat([m[1] for m in masks])[None],
        }
        batch.update(_common(samples, masks))
        return batch
