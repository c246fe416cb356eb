"""`PredictOptions`: how to predict beyond the mode, validated once, each defaulting to the checkpoint's config.

Options arrive by name (from the CLI, from Python callers); a name that is not an option is an error naming
the closest one, never silently ignored, and a value out of range is refused by the config's own checks
(`InferenceConfig`), so the bounds are written once.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bbuvl.config import InferenceConfig


class PredictOptions(BaseModel):
    """Every option a prediction mode reads (infer/modes/); see `InferenceConfig` for what each means."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    constrained: bool  # answers (generate, teachers) and captions (head, name) kept to the checkpoint's labels
    score_threshold: float  # objects scoring below are dropped
    objectness_threshold: float  # head, name: queries at least this sure an object is there
    nms_iou: float | None  # head, name: duplicates above this IoU removed (None: no NMS)
    max_new_tokens: int  # generate, teachers: the answer's token budget
    batch_rows: int = Field(gt=0)  # name: boxes named per forward pass

    @classmethod
    def of(cls, inference: InferenceConfig, **given: Any) -> "PredictOptions":
        """`inference`'s defaults with `given` over them; ValueError naming a misspelt option or a value out of range."""
        valid = list(cls.model_fields)
        for name in given:
            if name not in cls.model_fields:
                close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
                hint = f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(valid)}"
                raise ValueError(f"unknown prediction option '{name}' ({hint})")
        shared = {k: v for k, v in given.items() if k in InferenceConfig.model_fields}
        try:
            checked = InferenceConfig.model_validate(inference.model_dump() | shared)
            return cls(**{k: getattr(checked, k) for k in valid if k in InferenceConfig.model_fields},
                       batch_rows=given.get("batch_rows", inference.batch_size * 4))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"prediction option '{where}': {first['msg']}, got {first.get('input')!r}") from None
