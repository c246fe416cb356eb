"""GRPO started from a run's final/ while that run is being trained again with --overwrite (which removed its final/
before saving a new one): the start is not there yet, and the refusal names the command writing it, where it said
'no such checkpoint folder', as if the path were a typo. The writer is a real lock held by another process, as
`bbuvl train` holds its training.output_dir."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config
from tests.reliability.test_train2_model_being_written import _hold
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

pytestmark = pytest.mark.filterwarnings("ignore")


def _train(cfg, tmp_path) -> tuple[int, str]:
    path = tmp_path / "grpo.yaml"
    path.write_text(dump_config(cfg), encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(path)], env={"COLUMNS": "400"})
    return result.exit_code, " ".join(result.output.split())


def test_a_start_whose_run_is_being_trained_again_is_named_as_not_there_yet(grpo_config, tmp_path):
    run = tmp_path / "stage_a"
    run.mkdir()
    child = _hold(run, "train")
    try:
        code, said = _train(grpo_config(f"model.path={run / 'final'}"), tmp_path)
    finally:
        child.kill()
        child.wait()
    assert code == 2, said
    assert f"model.path {run / 'final'}: no such folder yet: `bbuvl train` (pid {child.pid}) is writing {run} now; " \
           "wait for that command to finish, then run this one again" in said, said
    assert not (tmp_path / "grpo").exists()


def test_a_start_that_is_not_there_with_no_writer_is_still_no_such_folder(grpo_config, tmp_path):
    code, said = _train(grpo_config(f"model.path={tmp_path / 'stage_a' / 'final'}"), tmp_path)
    assert code == 2 and "no such checkpoint folder (GRPO starts from a local folder" in said, said
