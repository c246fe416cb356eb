"""A data file every photo of which `data.oversize: skip` leaves out, refused when the run starts.

Skipped whole, data.train stopped the run after its model had loaded with "no training photos to measure the scale
of", and data.val ran every evaluation on nothing: no eval_loss was logged, so early stopping and the over-fit
monitor never had a number, and the run said nothing of it. A teacher pool skipped whole drew no teacher.
"""

from __future__ import annotations

from dataclasses import replace

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.schema import ImageRecord
from bbuvl.train.dataset import ConversationDataset, SourcedRecord


def all_skipped(key: str, path: str, records: list[ImageRecord], contract: CoordinateContract) -> str | None:
    """Why `data.oversize: skip` leaves the file at `key` no photo (each over the vision-token budget), or None."""
    if not records or not all(contract.over_budget(r.size) for r in records):
        return None
    need = min(replace(contract, max_vision_tokens=None).vision_tokens(r.size) for r in records)
    return (f"{key} {path}: data.oversize skip leaves it no photo: all {len(records)} of its photo(s) need more vision "
            f"tokens (at least {need}) than model.max_vision_tokens {contract.max_vision_tokens} allows at model.max_pixels "
            f"{contract.max_pixels}; raise model.max_vision_tokens to {need} or more, lower model.max_pixels, or set "
            "data.oversize: resize to show them shrunk to the budget")


def skipped_note(key: str, skipped: list[SourcedRecord], contract: CoordinateContract) -> str | None:
    """The start's warning of the photos `data.oversize: skip` leaves out of the file at `key`, naming it and each
    photo's line (the first five), or None when it leaves none."""
    if not skipped:
        return None
    return (f"{key} {skipped[0].dataset_path}: data.oversize skip leaves out {len(skipped)} photo(s) over "
            f"model.max_vision_tokens {contract.max_vision_tokens}: "
            + ", ".join(f"line {s.line} ({s.record.image})" if s.line is not None else s.record.image for s in skipped[:5])
            + (" ..." if len(skipped) > 5 else ""))


def skipped_counts(train: ConversationDataset, val: ConversationDataset | None) -> dict[str, int]:
    """How many photos `data.oversize: skip` left out of each data file, by its key (the teacher pool counted once)."""
    counts = {"data.train": len(train.skipped), "data.val": len(val.skipped) if val is not None else 0,
              "data.teachers": len(train.pool_skipped)}
    return {key: n for key, n in counts.items() if n}
