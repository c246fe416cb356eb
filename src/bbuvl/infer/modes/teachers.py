"""teachers: generate, with the teacher photos and their answers shown first, as in teacher-student training
(`Predictor.set_teachers`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from bbuvl.infer.modes.generate import answers

if TYPE_CHECKING:
    from bbuvl.infer.options import PredictOptions
    from bbuvl.infer.predictor import ImageResult, Predictor, Prepared


def run(predictor: "Predictor", prepared: Sequence["Prepared"], options: "PredictOptions") -> list["ImageResult"]:
    """The answer to each photo after the checkpoint's teachers."""
    return answers(predictor, prepared, options, with_teachers=True)
