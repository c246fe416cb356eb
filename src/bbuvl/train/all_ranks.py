"""What each training process counted of the photos it drew, put together for the end of the run.

Only the first process prints the end of a run, and it printed its own counts: a photo that could not be read when
drawn, an answer a crop made too long, a sample the collator dropped for its budget, met by another rank, were missing
from the summary of a run under torchrun (its warning scrolled past in the middle of the log).
"""

from __future__ import annotations

import os
from typing import Any

import torch


def first_process() -> bool:
    """Whether this is the run's first process: under torchrun or accelerate every process builds the same run, and
    only the first says what it found and prints the run's summary."""
    return int(os.environ.get("RANK", "0")) == 0


def every_rank(value: Any) -> list[Any]:
    """`value` of every rank, in rank order: a collective every rank calls ([value] in one process)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [value]
    ranks: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, value)
    return ranks


def drawn_notes(unreadable: list[str], cut: list[str], dropped: int) -> tuple[list[str], list[str], int]:
    """Every rank's unreadable photos and answers cut in draws (each once, in rank order) and samples dropped for the
    budget (summed): a collective every rank calls."""
    ranks = every_rank((unreadable, cut, dropped))
    return (list(dict.fromkeys(x for r in ranks for x in r[0])), list(dict.fromkeys(x for r in ranks for x in r[1])),
            sum(r[2] for r in ranks))
