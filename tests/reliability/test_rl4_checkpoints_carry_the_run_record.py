"""A GRPO checkpoint carries its run's record (run_record.json, a copy of run.json): its bbuvl.yaml keeps the starting
run's data and model sections (predict reads them), so a resume whose folder had lost run.json compared only GRPO's
`training` and `grpo` sections, and went on with other data or another start without a word."""

import shutil

import pytest

from bbuvl.rl.trainer import train_grpo
from bbuvl.train.run_record import CHECKPOINT_RECORD, ResumeMismatch, check_resume
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture
from tests.train.test_run_inputs import _tree

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]

RUN = ("training.max_steps=2", "training.save_steps=2", "grpo.beta=0")


@pytest.fixture()
def finished(grpo_config, trained_checkpoint, small_dataset, tmp_path):
    """`(overrides) -> cfg`: a 2-step GRPO run from a copy of the session's checkpoint on a copy of its data, saved at
    step 2 (checkpoint-2), then its run.json deleted; `overrides` apply to the run and to the config returned."""
    shutil.copytree(trained_checkpoint, tmp_path / "start")
    shutil.copytree(small_dataset, tmp_path / "data")

    def run(*overrides):
        cfg = grpo_config(f"model.path={tmp_path / 'start'}", f"data.train={tmp_path / 'data' / 'train.jsonl'}", *RUN,
                          *overrides)
        train_grpo(cfg, progress=False)
        (tmp_path / "grpo" / "run.json").unlink()
        return cfg

    return run


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_without_run_json_and_with_other_data_is_refused_naming_it(finished, grpo_config, tmp_path):
    cfg = finished()
    other = tmp_path / "other.jsonl"
    lines = (tmp_path / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    other.write_text("".join(lines[:-1]), encoding="utf-8")  # one photo fewer: the same images folder
    shutil.copytree(tmp_path / "data" / "images", tmp_path / "images")
    before = _tree(tmp_path / "grpo")
    with pytest.raises(ResumeMismatch) as e:
        train_grpo(cfg.model_copy(update={"data": cfg.data.model_copy(update={"train": str(other)}),
                                          "training": cfg.training.model_copy(update={"max_steps": 3})}),
                   resume=True, progress=False)
    said = str(e.value)
    assert f"{tmp_path / 'grpo' / 'checkpoint-2' / CHECKPOINT_RECORD} (what the run was started with, as its checkpoint " \
           "carries it)" in said
    assert f"data.train '{tmp_path / 'data' / 'train.jsonl'}' (now '{other}'): its content changed" in said
    assert _tree(tmp_path / "grpo") == before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_without_run_json_and_another_start_is_refused_and_moved_data_resumes(finished, tmp_path):
    cfg = finished()
    ckpt = tmp_path / "grpo" / "checkpoint-2"
    shutil.move(tmp_path / "data", tmp_path / "moved")  # the same files elsewhere: compared by content
    moved = cfg.model_copy(update={"data": cfg.data.model_copy(update={"train": str(tmp_path / "moved" / "train.jsonl")})})
    check_resume(moved, ckpt)
    # The start retrained in place: the GRPO run's own weights over the start's
    shutil.copy(tmp_path / "grpo" / "final" / "model.safetensors", tmp_path / "start" / "model.safetensors")
    with pytest.raises(ResumeMismatch, match=rf"model.path '{tmp_path / 'start'}': its content changed"):
        check_resume(moved, ckpt)
