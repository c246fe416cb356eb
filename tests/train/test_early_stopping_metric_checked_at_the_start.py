"""An early-stopping metric that no evaluation would log, or one set without a validation set, is refused by
`bbuvl config check` and by the training start at its line (train/run_inputs.py `early_stopping_problems`): it was
warned only at the first evaluation, and the run trained on to its end with "no alarms"."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args) -> tuple[int, str]:
    r = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return r.exit_code, " ".join(r.output.split())


def config_file(run_config, tmp_path, *overrides: str):
    """(the path, the line of monitor.early_stopping_metric) of `run_config(*overrides)` written out."""
    path = tmp_path / "run.yaml"
    path.write_text(dump_config(run_config(*overrides)), encoding="utf-8")
    line = next(n for n, text in enumerate(path.read_text("utf-8").splitlines(), 1) if "early_stopping_metric" in text)
    return path, line


@pytest.mark.parametrize("overrides, says", [
    (("monitor.early_stopping_metric=eval_los",), "'eval_los' is no metric an evaluation logs, so early stopping would "
                                                  "never stop the run (did you mean eval_loss?)"),
    (("monitor.early_stopping_metric=eval_grounding",), "eval_grounding is logged only with loss.grounding_attention "
                                                        "above 0"),
    (("monitor.early_stopping_metric=eval_loss", "data.val=null"), "and data.val is null, so no evaluation runs"),
])
def test_config_check_and_the_training_start_refuse_an_early_stopping_metric_that_never_stops(run_config, tmp_path,
                                                                                              overrides, says):
    path, line = config_file(run_config, tmp_path, *overrides)
    for command in (("config", "check", path), ("train", path)):
        code, said = invoke(*command)
        assert code == 2 and f"{path}:{line}: monitor.early_stopping_metric" in said and says in said, said
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("metric", ["eval_loss", "loss", "lm_student", "eval_loss_bbox"])
def test_a_metric_the_evaluation_logs_passes(run_config, tmp_path, metric):
    path, _ = config_file(run_config, tmp_path, f"monitor.early_stopping_metric={metric}")
    code, said = invoke("config", "check", path)
    assert code == 0 and "is valid" in said, said
