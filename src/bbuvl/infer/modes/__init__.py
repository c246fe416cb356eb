"""One module per prediction mode, each with `run(predictor, prepared, options) -> list[ImageResult | Exception]`: one
result per photo, or the error of a photo the model failed on while the batch's others were answered.

The modes themselves are declared once, in config.py's `PREDICT_MODES` (what each needs, whether `bbuvl serve`
runs it); the module here named after a mode runs it. `Predictor` (infer/predictor.py) owns what all of them
share: loading, preparing and encoding photos, collating, greedy decoding, the labels' grammar, the score
threshold and the retry policy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from bbuvl.infer.options import PredictOptions
    from bbuvl.infer.predictor import ImageResult, Predictor, Prepared

    Runner = Callable[[Predictor, Sequence[Prepared], PredictOptions], list[ImageResult | Exception]]


def runner(mode: str) -> "Runner":
    """The `run` of the module named `mode` in this package (a mode config.py declares)."""
    return importlib.import_module(f"{__name__}.{mode}").run
