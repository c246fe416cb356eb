"""`bbuvl predict` of a checkpoint saved while its run's loss was NaN warns, naming the records that say so: a dead model
answers `[]` for every photo, each judged "pass", and nothing said it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app

pytestmark = pytest.mark.filterwarnings("ignore")


def test_predict_warns_of_a_checkpoint_its_run_saved_while_diverging(diverged_checkpoint, small_dataset, tmp_path):
    out = tmp_path / "pred.jsonl"
    result = CliRunner().invoke(app, ["predict", "-c", str(diverged_checkpoint), "-i", str(small_dataset / "val.jsonl"),
                                      "-o", str(out), "--mode", "generate", "--device", "cpu"], env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    # A warning, not a refusal: the guard skips NaN steps, so such weights may still answer (doctor model runs them).
    assert result.exit_code == 0 and out.is_file(), said
    assert f"warning: {diverged_checkpoint}: its run had diverged when it saved it: the loss was not finite at" in said
    assert f"{diverged_checkpoint / 'trainer_state.json'}" in said and f"bbuvl doctor model {diverged_checkpoint}" in said
