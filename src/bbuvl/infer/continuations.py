"""Greedy decoding of many answers begun after one photo's prompt, the prompt (photo included) read once
(docs/localisation.md, "Box-prompted naming": name mode begins one answer per head box).

Name mode asks the VLM to finish `[{"bbox_2d": [box], "label": ` for every box the head found in a photo: dozens
of rows that differ only in their last few tokens. Generating them as independent rows runs the vision tower and
the whole prompt once per box. Here the prompt runs once, as a batch of one, with its image; its key/value cache,
repeated once per row, is what each row's own tokens and the decoding attend to. A causal LLM's states over a
prefix do not depend on what follows it, so each row's logits are those of the full row.

The rows' own tokens differ in length: each is placed at the end of a common width, with the gap before it masked
out and its positions continuing the prompt's without a gap, so every row sees exactly its own sequence. Only for
LLMs whose every layer is plain attention (`shares_prefix`): a Gated DeltaNet layer (Qwen3.5) carries a recurrent
state that a masked gap would still update: `can_continue_prompt` says so, and the caller decodes full rows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from transformers import LogitsProcessor

from bbuvl.encode.chat import EncodedSample
from bbuvl.encode.collate import Batch, PaddedCollator
from bbuvl.model.shared_prefix import shares_prefix
from bbuvl.model.vlm import core_model


def can_continue_prompt(vlm: Any) -> bool:
    """Whether this VLM's cache can be shared by rows with a masked gap (every LLM layer full attention)."""
    core = core_model(vlm)
    return shares_prefix(core.config.get_text_config())


@dataclass
class PromptRead:
    """One photo's prompt and, once the first of its rows' chunks read it, its collated row and key/value cache.

    Name mode decodes a photo's boxes `batch_rows` at a time: each chunk read the same prompt, photo included,
    again (a photo of 40 boxes read it three times), for the same states. Each chunk now starts from a copy of the
    first one's cache: the rows' own tokens extend the copy, never the cache kept."""

    sample: EncodedSample
    head: Batch | None = None
    cache: Any = None


@torch.inference_mode()
def greedy_continuations(vlm: Any, collator: PaddedCollator, prompt: EncodedSample | PromptRead,
                         continuations: Sequence[list[int]], processor: LogitsProcessor, stop_id: int,
                         max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding of `prompt` followed by each of `continuations`: the new token ids `[B, T]`, as
    `generate` would return them (a row that stopped is padded with the collator's pad id).

    `processor` sees, at each step, every row's full ids so far `[B, P + W + t]` (the gap holds pad ids) and the
    next-token logits `[B, V]`, and returns the scores the choice is the argmax of. A `PromptRead` is read by the
    LLM at its first call only, and kept for the calls after.
    """
    if min((len(c) for c in continuations), default=1) == 0:
        raise ValueError("every continuation needs at least one token (the prompt alone is one row of generate)")
    if not continuations or max_new_tokens <= 0:
        return torch.zeros(len(continuations), 0, dtype=torch.long)
    core = core_model(vlm)
    device = next(core.parameters()).device
    read = prompt if isinstance(prompt, PromptRead) else PromptRead(prompt)
    if read.cache is None:
        read.head = collator([read.sample]).to(device)  # one row: no padding
        out = core.model(input_ids=read.head.input_ids, attention_mask=read.head.attention_mask,
                         position_ids=read.head.position_ids, pixel_values=read.head.pixel_values,
                         image_grid_thw=read.head.image_grid_thw, use_cache=True, return_dict=True)
        read.cache = out.past_key_values
    head = read.head
    # Repeating it for the rows replaces the cache's tensors, and decoding extends them: a kept read is copied first.
    cache = copy.deepcopy(read.cache) if read is prompt else read.cache
    rows, width = len(continuations), max(len(c) for c in continuations)
    cache.batch_repeat_interleave(rows)
    start = int(head.position_ids.max()) + 1  # text after the prompt continues from its furthest position
    ids = torch.full((rows, width), collator.pad_token_id, dtype=torch.long, device=device)
    gap = torch.zeros(rows, width, dtype=torch.long, device=device)
    positions = torch.full((head.position_ids.shape[0], rows, width), start, dtype=torch.long, device=device)
    for r, c in enumerate(continuations):
        k = len(c)
        ids[r, width - k:] = torch.tensor(c, dtype=torch.long, device=device)
        gap[r, width - k:] = 1
        positions[:, r, width - k:] = start + torch.arange(k, device=device)
    mask = torch.cat([head.attention_mask.expand(rows, -1), gap], dim=1)  # [B, P + W]
    seq = torch.cat([head.input_ids.expand(rows, -1), ids], dim=1)
    following = positions[0, :, -1] + 1  # [B]: the position of each row's next token
    out = core.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                     use_cache=True, return_dict=True)
    logits = core.lm_head(out.last_hidden_state[:, -1])  # [B, V]
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    new = []
    for _ in range(max_new_tokens):
        chosen = processor(seq, logits.float()).argmax(-1)  # [B]
        chosen = torch.where(done, torch.full_like(chosen, collator.pad_token_id), chosen)
        new.append(chosen)
        seq = torch.cat([seq, chosen[:, None]], dim=1)
        done = done | (chosen == stop_id)
        if bool(done.all()) or len(new) == max_new_tokens:
            break
        mask = torch.cat([mask, torch.ones(rows, 1, dtype=mask.dtype, device=device)], dim=1)
        step = following[None, :, None].expand(positions.shape[0], rows, 1)
        following = following + 1
        out = core.model(input_ids=chosen[:, None], attention_mask=mask, position_ids=step, past_key_values=cache,
                         use_cache=True, return_dict=True)
        logits = core.lm_head(out.last_hidden_state[:, -1])
    return torch.stack(new, dim=1).cpu()
