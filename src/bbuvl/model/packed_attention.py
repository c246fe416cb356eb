"""Packed rows without a dense mask: SDPA run once per packed sample (docs/design.md, "Packed rows isolate their samples").

A packed row (encode/collate.py's `PackedCollator`: text positions restarting at 0 per sample, no attention mask)
is isolated by transformers' SDPA path through a dense boolean L x L block-causal mask. On CPU that mask sends SDPA
to its slow masked kernel and computes every cross-sample score only to mask it: packed rows ran at 0.58x padded
ones. Flash-attention's varlen kernel avoids both on a GPU, from the same restarting positions.

`packed_sdpa` does what varlen does, with plain SDPA: it cuts the row where the text positions restart and runs
causal SDPA (its fast unmasked kernel) on each sample. It registers as an attention implementation of its own,
so a model switches to it with `model.set_attn_implementation(PACKED_SDPA)`; everything that is not a packed
row (a padded batch with its mask, generation with a cache, the vision tower's bidirectional blocks) goes to
transformers' own SDPA unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

PACKED_SDPA = "bbuvl_packed_sdpa"


def sample_lengths(position_ids: torch.Tensor) -> list[int]:
    """Lengths of the samples in one packed row, from its text positions `[L]` (a sample starts where they do not
    go up by one, as transformers' `find_packed_sequence_indices` reads them)."""
    step = torch.diff(position_ids, prepend=position_ids[:1] - 1)
    starts = torch.nonzero(step != 1).flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    return [b - a for a, b in zip(starts, [*starts[1:], position_ids.numel()])]


def packed_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                is_causal: bool | None = None, position_ids: torch.Tensor | None = None,
                **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal SDPA per sample of each packed row; transformers' SDPA for anything else.

    query `[B, H, L, D]`, key / value `[B, H_kv, L, D]`; position_ids `[B, L]` text positions (restarting per
    sample in a packed row). Returns `([B, L, H, D], None)` like `sdpa_attention_forward`.
    """
    length = query.shape[2]
    packed = (attention_mask is None and position_ids is not None and is_causal is not False
              and length > 1 and key.shape[2] == length)
    if not packed:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    rows = []
    for b in range(query.shape[0]):
        lengths = sample_lengths(position_ids[b])
        if len(lengths) == 1:
            rows.append(sdpa_attention_forward(module, query[b : b + 1], key[b : b + 1], value[b : b + 1], None,
                                               dropout=dropout, scaling=scaling, is_causal=True, **kwargs)[0])
            continue
        parts = zip(*(t[b : b + 1].split(lengths, dim=2) for t in (query, key, value)))
        rows.append(torch.cat([sdpa_attention_forward(module, q, k, v, None, dropout=dropout, scaling=scaling,
                                                      is_causal=True, **kwargs)[0] for q, k, v in parts], dim=1))
    return torch.cat(rows, dim=0), None


def packed_sdpa_mask(*args: Any, attention_mask: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor | None:
    """No mask where there is no padding (the attention cuts packed rows itself); SDPA's own mask where there is."""
    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


AttentionInterface.register(PACKED_SDPA, packed_sdpa)
# Without a mask function of its own, transformers builds no mask at all for an unknown implementation, and a
# padded batch would attend to its padding.
AttentionMaskInterface.register(PACKED_SDPA, packed_sdpa_mask)


def use_packed_sdpa(model: Any) -> bool:
    """Switch a model loaded with SDPA to `packed_sdpa` (text and vision alike; only packed text rows differ).

    Returns whether it switched: flash-attention already cuts packed rows itself (varlen), and eager is left
    as the user chose it.
    """
    if model.config._attn_implementation != "sdpa":
        return False
    model.set_attn_implementation(PACKED_SDPA)
    return True
