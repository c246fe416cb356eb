"""What each training process counted of the photos it drew, put together for the end of the run.

Only the first process prints the end of a run, and it printed its own counts: a photo that could not be read when
drawn, an answer a crop made too long, a sample the collator dropped for its budget, met by another rank, were missing
from the summary of a run under torchrun (its warning scrolled past in the middle of the log).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch


def first_process() -> bool:
    """Whether this is the run's first process: under torchrun or accelerate every process builds the same run, and
    only the first says what it found and prints the run's summary."""
    return int(os.environ.get("RANK", "0")) == 0


# transformers' note, once a process, that a model runs an optional kernel's reference PyTorch code because its package
# is not installed (transformers/integrations/hub_kernels.py): Qwen3.5's Gated DeltaNet layers without
# flash-linear-attention and causal-conv1d (docs/families.md, "Optional kernels")
KERNEL_FALLBACK = "is falling back to its reference PyTorch implementation because"
KERNEL_LOGGER = "transformers.integrations.hub_kernels"


class _KernelFallbackOnFirst(logging.Filter):
    """Drops transformers' optional-kernel fallback notes: the first process says them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return KERNEL_FALLBACK not in record.getMessage()


def kernel_notes_once() -> None:
    """Leave transformers' notes of an optional kernel not installed to the first process: every process of a run
    runs the same packages and said them, so a Qwen3.5 run on 8 GPUs without flash-linear-attention held each 8
    times. The first process still says each (an environment fact: correct, and slower)."""
    log = logging.getLogger(KERNEL_LOGGER)
    if not first_process() and not any(isinstance(f, _KernelFallbackOnFirst) for f in log.filters):
        log.addFilter(_KernelFallbackOnFirst())


def every_rank(value: Any) -> list[Any]:
    """`value` of every rank, in rank order: a collective every rank calls ([value] in one process)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [value]
    ranks: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, value)
    return ranks


def peer_lost(e: BaseException) -> str | None:
    """What to say of `e` when a collective of torch.distributed raised it (another rank of the run ended, and the
    collective it waited in failed: gloo's "Connection closed by peer"), else None.

    The rank that failed first says why in its own words (an `error:` line, or torchrun's summary for a rank killed);
    the others raised a traceback of 60 lines after it, which named no rank and no cause ("Check the logs of the remote
    worker")."""
    tb = e.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).parts[-3:] == ("torch", "distributed", "distributed_c10d.py"):
            break
        tb = tb.tb_next
    else:
        return None
    reason = " ".join(str(e).split()).split(". ")[0]  # gloo goes on with advice to read the other rank's log
    reason = reason if len(reason) <= 300 else reason[:300] + "..."
    return (f"rank {os.environ.get('RANK', '0')} of {os.environ.get('WORLD_SIZE', '1')} stopped: another process of this "
            f"run ended while this one waited for it in {tb.tb_frame.f_code.co_name} ({type(e).__name__}: {reason}); "
            "the error it printed above, or the launcher's summary (torchrun's 'Root Cause'), says why")


def drawn_notes(unreadable: list[str], cut: list[str], dropped: int) -> tuple[list[str], list[str], int]:
    """Every rank's unreadable photos and answers cut in draws (each once, in rank order) and samples dropped for the
    budget (summed): a collective every rank calls."""
    ranks = every_rank((unreadable, cut, dropped))
    return (list(dict.fromkeys(x for r in ranks for x in r[0])), list(dict.fromkeys(x for r in ranks for x in r[1])),
            sum(r[2] for r in ranks))
