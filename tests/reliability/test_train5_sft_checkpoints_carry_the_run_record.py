"""An SFT checkpoint carries its run's record (run_record.json, a copy of run.json), as a GRPO one does: a resume whose
folder lost run.json compared the checkpoint's bbuvl.yaml, paths by their spelling, so a data file edited in place
under the same name, or a base model retrained in place, resumed without a word."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bbuvl.train.run_record import CHECKPOINT_RECORD, RUN_RECORD, ResumeMismatch
from bbuvl.train.trainer import train
from tests.train.test_run_inputs import _tree

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def started(run_config, small_dataset, tmp_path):
    """A one-step SFT run on a copy of the small dataset, saved at step 1, its run.json deleted; its config."""
    shutil.copytree(small_dataset, tmp_path / "data")
    data = tmp_path / "data"
    cfg = run_config(f"data.train={data / 'train.jsonl'}", f"data.teachers={data / 'teachers.jsonl'}", "data.val=null",
                     "training.max_steps=1", "training.save_steps=1")
    train(cfg, progress=False)
    out = Path(cfg.training.output_dir)
    assert (out / "checkpoint-1" / CHECKPOINT_RECORD).read_bytes() == (out / RUN_RECORD).read_bytes()
    assert not (out / "final" / CHECKPOINT_RECORD).exists()  # never resumed; runs start from it
    (out / RUN_RECORD).unlink()
    return cfg


def longer(cfg, steps: int = 2):
    """The same config, asked for `steps` steps."""
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"max_steps": steps})})


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_without_run_json_and_data_edited_in_place_is_refused_naming_the_carried_record(started, tmp_path):
    out, train_file = tmp_path / "run", tmp_path / "data" / "train.jsonl"
    kept = train_file.read_bytes()
    lines = kept.decode("utf-8").splitlines(keepends=True)
    train_file.write_text("".join(lines[:-1]), encoding="utf-8")  # the same name, a line fewer
    before = _tree(out)
    with pytest.raises(ResumeMismatch) as refused:
        train(longer(started), resume=True, progress=False)
    said = str(refused.value)
    assert f"{out / 'checkpoint-1' / CHECKPOINT_RECORD} (what the run was started with, as its checkpoint carries it)" in said
    assert f"data.train '{train_file}': its content changed" in said
    assert _tree(out) == before  # nothing cut, no run.json written
    train_file.write_bytes(kept)  # put back: the run goes on, and records itself again
    train(longer(started), resume=True, progress=False)
    assert (out / RUN_RECORD).is_file() and (out / "checkpoint-2" / CHECKPOINT_RECORD).is_file()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_without_any_record_still_compares_the_checkpoints_config(started, tmp_path):
    """A run from before records, neither run.json nor the copy: its checkpoint's bbuvl.yaml speaks for it."""
    out = tmp_path / "run"
    (out / "checkpoint-1" / CHECKPOINT_RECORD).unlink()
    other = started.model_copy(update={"detection": started.detection.model_copy(update={"num_queries": 4})})
    with pytest.raises(ResumeMismatch, match=r"checkpoint-1/bbuvl.yaml \(the config that checkpoint trained with\): "
                                             r"detection.num_queries 8 \(now 4\)"):
        train(longer(other), resume=True, progress=False)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_full_fine_tune_whose_hub_id_like_base_and_run_json_are_gone_resumes_from_the_carried_record(
        run_config, tiny_model_dir, tmp_path, monkeypatch):
    """configs/demo.yaml's `demo_out/tiny-model` reads as a hub id: only a record says it was a folder, and with
    run.json gone the resume asked the Hugging Face cache for a model of that name."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "demo_out" / "tiny-model")
    cfg = run_config("model.path=demo_out/tiny-model", "training.max_steps=1", "training.save_steps=1", "data.val=null")
    train(cfg, progress=False)
    (tmp_path / "run" / RUN_RECORD).unlink()
    shutil.rmtree(tmp_path / "demo_out")
    final = Path(train(longer(cfg), resume=True, progress=False)["final"])
    assert "path: demo_out/tiny-model\n" in (final / "bbuvl.yaml").read_text("utf-8")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_copied_out_alone_resumes_into_a_new_folder_once_its_hub_id_like_base_is_gone(
        run_config, tiny_model_dir, tmp_path, monkeypatch):
    """`--resume-from backup/checkpoint-1` into a new training.output_dir: only the copy of the record the checkpoint
    carries says that `demo_out/tiny-model` was a folder, and the resume asked the Hugging Face cache for it."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "demo_out" / "tiny-model")
    cfg = run_config("model.path=demo_out/tiny-model", "training.max_steps=1", "training.save_steps=1", "data.val=null")
    train(cfg, progress=False)
    shutil.copytree(tmp_path / "run" / "checkpoint-1", tmp_path / "backup" / "checkpoint-1")
    shutil.rmtree(tmp_path / "demo_out")
    moved = longer(cfg).model_copy(deep=True)
    moved.training.output_dir = str(tmp_path / "again")
    final = Path(train(moved, resume=str(tmp_path / "backup" / "checkpoint-1"), progress=False)["final"])
    assert final.is_dir() and (tmp_path / "again" / "checkpoint-2" / CHECKPOINT_RECORD).is_file()
