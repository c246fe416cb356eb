"""Rows of a batched decode dropped once no one awaits their photo's answer: the rows still wanted decode on alone.

`generate` computes every row of a batch at every step until its last row ends. A server's photo whose request was
given up on (its deadline passed, its client left: docs/serving.md, "Deadlines") kept its row in each of those steps,
so one given-up photo in a batch of eight went on costing an eighth of every token. Before each of the language
model's passes after the prompt's, each photo is asked whether it is still awaited; the rows of those that are not are
taken out of the pass: out of its inputs, and out of the key/value cache (`reorder_cache` selects rows of any layer
kind, linear attention's states included), so no later pass computes them either. Their logits are handed back to
`generate` as zeros at the batch's full width, which keeps its own bookkeeping (the ids, each logits processor's
state per row) as it was, and `EndDropped` makes the next token of a dropped row the answer's end, so the decode stops
when the rows still wanted have ended.

Attention is per row and a row's cache holds only its own keys and values, so the rows kept write the tokens they
would have written in a batch that never held the dropped ones (tests/infer/test_dropped_rows.py, token for token).
The prompt's pass (the vision tower, the whole prompt) is never cut: a photo given up before its batch began is not
in the batch (serve/batching.py). Modes that work photo by photo ask `gone` instead, before each photo's next piece of
work: tiles and zoom before each chunk of its regions, name mode before each chunk of its boxes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from transformers import LogitsProcessor

from bbuvl.model.vlm import core_model


# A dropped photo's result says so: what it holds is what was written before it left, no answer
GIVEN_UP = "given up on: it left its batch before its answer was done"


@dataclass
class Awaited:
    """Whether a photo's answer is still awaited (`given_up`, polled before each pass) and what dropping it saved."""

    given_up: Callable[[], bool]
    dropped: bool = False  # it left its batch (its row, or the rest of its regions or boxes) before it was done
    passes_saved: int = 0  # the language model's passes its row was left out of (one row of a pass each)


def gone(awaited: Awaited | None) -> bool:
    """Whether the photo of `awaited` (None: always awaited) is given up on, then marked dropped: a mode that works
    photo by photo (tiles and zoom, name mode's boxes) skips the rest of its work."""
    if awaited is None or not awaited.given_up():
        return False
    awaited.dropped = True
    return True


class RowDrops:
    """While entered, takes the rows of given-up photos out of every pass of `vlm`'s language model over one batch."""

    def __init__(self, vlm: Any, awaited: Sequence[Awaited | None]):
        """`awaited`: one per row of the batch about to be decoded (None: always awaited)."""
        core = core_model(vlm)
        self._language_model, self._lm_head = core.model.language_model, core.lm_head
        self.awaited = list(awaited)
        self.live = list(range(len(self.awaited)))  # the batch's rows the cache still holds, in order
        self.dropped: list[int] = []  # the rows taken out so far
        # both as tensors, made once a drop and not once a token: each small op costs a token its microseconds
        self._live_index: torch.Tensor | None = None
        self.dropped_index: torch.Tensor | None = None
        self._hooks: list[Any] = []

    def __enter__(self) -> "RowDrops":
        self._hooks = [self._language_model.register_forward_pre_hook(self._before_pass, with_kwargs=True),
                       self._lm_head.register_forward_hook(self._logits_at_full_width)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def _wanted(self, row: int) -> bool:
        a = self.awaited[row]
        return a is None or not a.given_up()

    def _before_pass(self, module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """The pass's inputs cut to the rows still awaited (the cache too, in place)."""
        embeds = kwargs.get("inputs_embeds")
        cache = kwargs.get("past_key_values")
        if embeds is None or cache is None or cache.get_seq_length() == 0:  # the prompt's pass: every row reads it
            return args, kwargs
        width = embeds.shape[0]
        if width != len(self.awaited):
            raise ValueError(f"rows dropped from a batch of {len(self.awaited)} photos, but the pass has {width} rows")
        keep = [row for row in self.live if self._wanted(row)]
        # With none left, the batch is the caller's to stop (serve/engine.py stops it when every photo is given up);
        # the rows it holds run on meanwhile rather than a pass of no rows.
        if keep and keep != self.live:
            cache.reorder_cache(torch.tensor([self.live.index(row) for row in keep], device=embeds.device))
            for row in set(self.live) - set(keep):
                self.awaited[row].dropped = True  # type: ignore[union-attr]  # only an awaited row is ever dropped
            self.live = keep
            self.dropped = sorted(set(range(width)) - set(keep))
            self._live_index = torch.tensor(self.live, device=embeds.device)
            self.dropped_index = torch.tensor(self.dropped, device=embeds.device)
        for row in self.dropped:
            self.awaited[row].passes_saved += 1  # type: ignore[union-attr]
        if self._live_index is None:
            return args, kwargs
        return args, {name: _rows(value, self._live_index, width, name) for name, value in kwargs.items()}

    def _logits_at_full_width(self, module: torch.nn.Module, args: tuple, logits: torch.Tensor) -> torch.Tensor:
        """`logits` `[live, T, V]` of the rows computed, put back in their places of the batch `[B, T, V]` (zeros)."""
        if self._live_index is None or logits.shape[0] != len(self.live):
            return logits
        full = logits.new_zeros((len(self.awaited), *logits.shape[1:]))
        full[self._live_index] = logits
        return full

    def end_dropped(self, end_id: int) -> "EndDropped":
        """The logits processor that ends each dropped row's answer (last in `generate`'s list)."""
        return EndDropped(self, end_id)


class EndDropped(LogitsProcessor):
    """Makes the answer's end the only choice of every dropped row, so that `generate` stops once the others end."""

    def __init__(self, drops: RowDrops, end_id: int):
        self.drops, self.end_id = drops, end_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """`scores` `[B, V]` with every dropped row's at -inf but the end's."""
        rows = self.drops.dropped_index
        if rows is None:
            return scores
        scores = scores.clone()
        scores[rows] = -math.inf
        scores[rows, self.end_id] = 0.0
        return scores


def _rows(value: Any, index: torch.Tensor, width: int, name: str) -> Any:
    """`value` (a pass's keyword argument) cut to the rows `index` of its batch dimension, when it has one."""
    if isinstance(value, dict):  # attention masks prepared per layer kind
        return {k: _rows(v, index, width, name) for k, v in value.items()}
    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        return value
    if name == "position_ids" and value.ndim == 3:  # mRoPE positions: [3 or 4, B, T]
        return value.index_select(1, index) if value.shape[1] == width else value
    return value.index_select(0, index) if value.shape[0] == width else value
