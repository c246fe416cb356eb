"""The prompt every row of a padded batch starts with, read once (docs/design.md, "The shared prompt is read once").

Every conversation starts with the same system prompt, and a causal LLM's states over a prefix do not depend on
what follows it. A padded batch of B rows would compute those states B times. Here the prefix runs once as a batch
of one; its key/value cache, repeated B times, is what the rest of every row attends to, and its hidden states,
expanded to B rows, take their place in front of the rest's. Gradients reach the prefix through both, summed
over the rows as the B copies would have summed them, so the loss and every gradient equal the full pass's.

Only for LLMs whose every layer is plain attention: a Gated DeltaNet layer (Qwen3.5) updates its cache in place,
which autograd cannot see through. Not under gradient checkpointing, which would replay the cache updates, nor
under ZeRO-3, which would gather every LLM weight twice a step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bbuvl.encode.collate import Batch

# A floor for the extra pass's fixed cost: every system prompt here is far longer (168 tokens or more); the exact
# break-even was not measured.
MIN_SHARED_TOKENS = 16


def shares_prefix(text_config: Any) -> bool:
    """True when every LLM layer is full attention (a cache autograd can flow through and that a batch can share)."""
    layer_types = getattr(text_config, "layer_types", None)
    return layer_types is None or all(t == "full_attention" for t in layer_types)


def checkpointed(language_vlm: nn.Module) -> bool:
    """True when the family's `...Model` recomputes its LLM layers in the backward pass (gradient checkpointing)."""
    return any(getattr(m, "gradient_checkpointing", False) for m in language_vlm.language_model.modules())


def partitioned(language_vlm: nn.Module) -> bool:
    """True when DeepSpeed ZeRO-3 holds the LLM's weights in shards (its parameters carry a `ds_id`): a second pass
    through the layers would gather every shard twice a step, a cost not measured here, so sharing stays off."""
    first = next(language_vlm.language_model.parameters(), None)
    return first is not None and hasattr(first, "ds_id")


def can_share_prefix(language_vlm: nn.Module) -> bool:
    """Whether reading the shared prompt once is exact and cheaper for this model as it is set up now."""
    return not checkpointed(language_vlm) and not partitioned(language_vlm)


def shared_prefix_length(batch: Batch) -> int:
    """Tokens at the start of every row that are the same text at the same positions, unmasked and before any image.

    0 when sharing does not apply: one row, packed rows (no attention mask), or fewer than MIN_SHARED_TOKENS.
    At least one token of every row stays after the prefix.
    """
    if batch.attention_mask is None or batch.input_ids.shape[0] < 2:
        return 0
    ids, pos = batch.input_ids, batch.position_ids  # [B, L], [3, B, L]
    same = ((ids == ids[:1]).all(0) & batch.attention_mask.bool().all(0) & (batch.mm_token_type_ids == 0).all(0)
            & (pos == pos[:, :1]).all(0).all(0))  # [L]
    differs = torch.nonzero(~same).flatten()
    length = int(differs[0]) if differs.numel() else ids.shape[1]
    length = min(length, ids.shape[1] - 1)
    return length if length >= MIN_SHARED_TOKENS else 0


def forward_shared_prefix(language_vlm: nn.Module, batch: Batch, prefix: int,
                          output_input_embeds: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The family's `...Model` (`core_model(vlm).model`) over a padded batch whose first `prefix` tokens every row
    shares (`shared_prefix_length`): the prefix once, then every row's rest against its repeated cache.

    Returns `(input embeddings [B, L, H] or None unless asked for, last hidden states [B, L, H])`, as
    `BBUVLModel.vlm_pass` does.
    """
    rows = batch.input_ids.shape[0]
    head = language_vlm(
        input_ids=batch.input_ids[:1, :prefix], attention_mask=batch.attention_mask[:1, :prefix],
        position_ids=batch.position_ids[:, :1, :prefix], use_cache=True, output_hidden_states=output_input_embeds,
        return_dict=True,
    )
    cache = head.past_key_values
    cache.batch_repeat_interleave(rows)
    rest = language_vlm(
        input_ids=batch.input_ids[:, prefix:], attention_mask=batch.attention_mask,
        position_ids=batch.position_ids[:, :, prefix:], pixel_values=batch.pixel_values,
        image_grid_thw=batch.image_grid_thw, past_key_values=cache, use_cache=True,
        output_hidden_states=output_input_embeds, return_dict=True,
    )

    def join(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return torch.cat([first.expand(rows, -1, -1), second], dim=1)

    embeds = join(head.hidden_states[0], rest.hidden_states[0]) if output_input_embeds else None
    return embeds, join(head.last_hidden_state, rest.last_hidden_state)
