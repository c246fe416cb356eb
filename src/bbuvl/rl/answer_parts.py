"""Which part of an answer each of its tokens writes (a box, a label, or the JSON around them), and the advantages
that credit each part with the reward terms it can change (`grpo.advantages: parts`, docs/grpo.md, "Credit per part
of the answer").

With one advantage per answer, a rollout that names the shape right is reinforced digit by digit, wherever its box
lies: on a start that has not learned its boxes, the label term then moves the box digits at random, and greedy
decoding collapsed to one box for every photo (`[11, 111, 111, 111]`). Crediting each part separately keeps the
label's reward off the box digits and the boxes' off the label:

    box tokens     every term but `label`      (the label is judged on the matched pair: its own tokens earn it)
    label tokens   every term but `detection`  (the matching is on IoU alone: a label cannot change it)
    other tokens   the weighted total          (brackets, separators, the end of the answer)

each term's weighted sum made group-relative on its own (rl/objective.py's `group_advantages`).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch

from bbuvl.rl.objective import group_advantages

BOX, LABEL, OTHER = 0, 1, 2
# The numbers of a box, separators included, and a label's JSON string, quotes included: the bytes a box's or a
# label's tokens write. The pattern reads answers written without the grammar too (`grpo.constrained: false`).
_BOX = re.compile(rb'"bbox_2d"\s*:\s*\[([^\]]*)\]?')
_LABEL = re.compile(rb'"label"\s*:\s*("(?:[^"\\]|\\.)*"?)')


def token_parts(pieces: Sequence[bytes]) -> list[int]:
    """Each token's part (BOX, LABEL or OTHER) from its bytes: BOX when any of its bytes is a box's, LABEL when any
    is a label's, OTHER otherwise (a token may hold a box's last digit and the bracket after it)."""
    text = b"".join(pieces)
    part = bytearray([OTHER]) * len(text)
    for pattern, kind in ((_LABEL, LABEL), (_BOX, BOX)):
        for m in pattern.finditer(text):
            part[m.start(1):m.end(1)] = bytes([kind]) * (m.end(1) - m.start(1))
    parts, at = [], 0
    for piece in pieces:
        mine = part[at:at + len(piece)]
        at += len(piece)
        parts.append(BOX if BOX in mine else LABEL if LABEL in mine else OTHER)
    return parts


def part_advantages(terms: Mapping[str, torch.Tensor], weights: Mapping[str, float], scale: bool) -> torch.Tensor:
    """`[3, P, G]`: the group-relative advantage of the box tokens, the label tokens and the others, from each
    reward term `[P, G]` and its weight."""
    def advantage(skip: str | None) -> torch.Tensor:
        total = sum(weights[k] * v for k, v in terms.items() if k != skip)
        if not torch.is_tensor(total):  # the only term was skipped: nothing this part can change
            return torch.zeros_like(next(iter(terms.values())))
        return group_advantages(total, scale)
    return torch.stack([advantage("label"), advantage("detection"), advantage(None)])


def token_advantages(parts: Sequence[Sequence[int]], by_part: torch.Tensor) -> torch.Tensor:
    """`[R, T]` advantages of R answers' tokens (zero past each answer's end) from their parts and `by_part` `[3, R]`."""
    T = max((len(p) for p in parts), default=0)
    out = torch.zeros(len(parts), T, dtype=by_part.dtype)
    for r, p in enumerate(parts):
        if p:
            out[r, :len(p)] = by_part[torch.tensor(p), r]
    return out
