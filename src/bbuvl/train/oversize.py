"""A data file every photo of which `data.oversize: skip` leaves out, refused when the run starts.

Skipped whole, data.train stopped the run after its model had loaded with "no training photos to measure the scale
of", and data.val ran every evaluation on nothing: no eval_loss was logged, so early stopping and the over-fit
monitor never had a number, and the run said nothing of it. A teacher pool skipped whole drew no teacher.
"""

from __future__ import annotations

from dataclasses import replace

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.schema import ImageRecord


def all_skipped(key: str, path: str, records: list[ImageRecord], contract: CoordinateContract) -> str | None:
    """Why `data.oversize: skip` leaves the file at `key` no photo (each over the vision-token budget), or None."""
    if not records or not all(contract.over_budget(r.size) for r in records):
        return None
    need = min(replace(contract, max_vision_tokens=None).vision_tokens(r.size) for r in records)
    return (f"{key} {path}: data.oversize skip leaves it no photo: all {len(records)} of its photo(s) need more vision "
            f"tokens (at least {need}) than model.max_vision_tokens {contract.max_vision_tokens} allows at model.max_pixels "
            f"{contract.max_pixels}; raise model.max_vision_tokens to {need} or more, lower model.max_pixels, or set "
            "data.oversize: resize to show them shrunk to the budget")
