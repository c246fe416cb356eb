"""Coordinate regression: a training-only read-out of each box coordinate from the hidden states that write it.

Generate mode writes a box as digit tokens. Cross-entropy on those digits reaches the route from the object's
image tokens to the answer only through ten-way digit choices, and from scratch that route is learned only in
part (docs/localisation.md, "What the language model knows before it writes a box"). This term gives it a
direct, continuous gradient: at every position that predicts a digit of a box coordinate, a linear layer reads
the coordinate's value (normalised to the photo's sides, 0..1) from the last hidden state, scored by a smooth L1
loss. Prediction never uses the layer: the answer format and decoding are unchanged. docs/grpo.md ("Teaching the
answer where to look", "Generate mode localises") has why and what it measured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Smooth L1's switch from quadratic to linear, in units of a photo side: below 5% of a side the loss is
# quadratic, so a near miss is refined gently, above it linear, so a far miss does not swamp the LM loss.
SMOOTH_L1_BETA = 0.05


class CoordinateReadout(nn.Module):
    """`[N, hidden]` hidden states -> `[N, 4]` estimates of (x1, y1, x2, y2), each normalised to its side."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, 4)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """The four normalised coordinates each hidden state holds, read linearly."""
        return self.proj(hidden)


def predicts_coordinate(coord_marks: torch.Tensor) -> torch.Tensor:
    """`[B, L]` positions whose NEXT token is a coordinate digit (the causal shift of the LM loss)."""
    at = torch.zeros_like(coord_marks, dtype=torch.bool)
    at[:, :-1] = coord_marks[:, 1:] >= 0
    return at


def coordinate_targets(coord_marks: torch.Tensor, sample_index: torch.Tensor,
                       coord_boxes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the coordinate losses read and what they aim at.

    coord_marks / sample_index: `[B, L]` (encode/collate.py; a mark `4 * box + coordinate` sits on each token of a
    box number); coord_boxes: S x `[N_s, 4]`. Returns `at [B, L]` (`predicts_coordinate`), and for those positions
    in row-major order the coordinate index `[N]` (0..3) and its normalised value `[N]`.
    """
    at = predicts_coordinate(coord_marks)
    marks = coord_marks[:, 1:][at[:, :-1]]  # [N]
    samples = sample_index[:, 1:][at[:, :-1]]  # [N] the sample the digit belongs to
    if marks.numel() == 0:
        return at, marks, torch.zeros(0, device=coord_marks.device)
    # One flat table of every sample's boxes, so each mark's value is one gather.
    counts = torch.tensor([b.shape[0] for b in coord_boxes], device=coord_marks.device)
    first_box = torch.cumsum(counts, 0) - counts  # [S]
    table = torch.cat([b.to(coord_marks.device, torch.float32) for b in coord_boxes]).reshape(-1)  # [sum N_s * 4]
    values = table[(first_box[samples] * 4 + marks)]
    return at, marks % 4, values


def coordinate_regression_sum(hidden: torch.Tensor, readout: CoordinateReadout, coord_marks: torch.Tensor,
                              sample_index: torch.Tensor, coord_boxes: list[torch.Tensor]) -> torch.Tensor:
    """Smooth L1 between each coordinate and its read-out at the positions that predict its digits, summed.

    hidden: `[B, L, H]` last hidden states; the rest as `coordinate_targets` takes them. A 0 still in the graph
    when the batch writes no coordinate (an empty answer), so backward works.
    """
    at, coordinate, value = coordinate_targets(coord_marks, sample_index, coord_boxes)
    if coordinate.numel() == 0:
        return readout(hidden[:, :0].reshape(0, hidden.shape[-1])).sum() * 0.0
    estimate = readout(hidden[at]).float().gather(1, coordinate[:, None])[:, 0]  # [N]
    return F.smooth_l1_loss(estimate, value, beta=SMOOTH_L1_BETA, reduction="sum")
