"""A checkpoint of a run whose loss went NaN: every doctor command that looks at it fails (status 1), naming the
divergence and the records that show it. Before, `doctor model` said "all checks passed" (finite weights of 1e8 whose
logits are all equal), `doctor attention` drew a table of NaN and exited 0, and `doctor features` and `landscape`
sent the user to `doctor model` to name the tensors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli.doctor import app
from bbuvl.diagnostics.model_doctor import diagnose_model

pytestmark = pytest.mark.filterwarnings("ignore")


def _said(result) -> str:
    return " ".join(result.output.split())


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_doctor_model_fails_a_diverged_run_naming_its_nan_losses_its_dead_llm_and_its_head(diverged_checkpoint):
    result = CliRunner().invoke(app, ["model", str(diverged_checkpoint)], env={"COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    checks = {c.name: c for c in diagnose_model(diverged_checkpoint).checks}
    losses = checks["training losses"]
    assert losses.status == "fail" and "the last one logged too" in losses.detail, losses.detail
    assert f"as {diverged_checkpoint / 'trainer_state.json'} and {diverged_checkpoint.parent / 'health.json'} record" \
        in losses.detail
    llm = checks["language model"]
    assert llm.status == "fail" and ("are all equal" in llm.detail or "hold NaN or inf" in llm.detail), llm.detail
    head = checks["detection head"]
    assert head.status == "fail" and "non-finite boxes/objectness" in head.detail and "the run diverged" in head.detail
    assert checks["finite weights"].status == "ok"  # the guard skipped each NaN step: only the forward passes tell


@pytest.mark.parametrize("command", ["attention", "features", "landscape"])
def test_the_head_commands_exit_1_naming_the_divergence_and_its_records(diverged_checkpoint, small_dataset, tmp_path,
                                                                          command):
    out = tmp_path / "plot.png"
    photo = small_dataset / "images" / sorted(p.name for p in (small_dataset / "images").iterdir())[0]
    args = {"attention": [str(diverged_checkpoint), str(photo)],
            "features": [str(diverged_checkpoint), "--data", str(small_dataset / "val.jsonl"), "--samples", "2"],
            "landscape": [str(diverged_checkpoint), str(small_dataset / "val.jsonl"), "--steps", "2", "--samples", "1"]}
    result = CliRunner().invoke(app, [command, *args[command], "--out", str(out), "--device", "cpu"],
                                env={"COLUMNS": "400"})
    said = _said(result)
    assert result.exit_code == 1, said
    assert "the run diverged before it saved: the loss was not finite at" in said, said
    assert f"{diverged_checkpoint.parent / 'health.json'}" in said and "lower learning rate" in said, said
    assert "`bbuvl doctor model` names the tensors" not in said
    assert not out.exists()  # attention drew a plot of NaN before
