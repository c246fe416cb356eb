"""The number-token loss at its chosen weight keeps the stage-A recipe's name-mode AP (docs/number_token_loss.md).

The learnability guard's run (tests/test_learnability.py: `configs/demo_shapes.yaml`, 600 one-shape photos, 550
steps) with `loss.number_token` at the weight the doc recommends must clear the guard's own name-mode bars. It
trains for about 3 minutes, so it runs with the slow tests.
"""

from __future__ import annotations

import pytest

from bbuvl.eval.coco_metrics import coco_evaluate
from tests.test_learnability import ABOVE_PRIOR, ONE, train_and_predict

pytestmark = pytest.mark.slow

CHOSEN_WEIGHT = 1.0  # docs/number_token_loss.md, "Measured on the shapes scene"


def test_name_mode_clears_the_guard_bar_with_the_number_token_loss_on(tmp_path):
    run = train_and_predict(tmp_path, ONE, overrides=(f"loss.number_token={CHOSEN_WEIGHT}",))
    result = coco_evaluate(run["records"], run["preds"]["name"])
    prior = run["prior"]
    assert result.summary["AP50"] >= max(ONE.name_ap50, prior.ap50 + ABOVE_PRIOR), (result.summary, prior)
