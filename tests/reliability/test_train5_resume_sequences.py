"""Sequences around `bbuvl train --resume`: a run's folder copied elsewhere and resumed there, from another working
folder, with relative paths; its data file or its hierarchy edited in place between the steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config
from bbuvl.data.labels import DEFAULT_HIERARCHY
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture
from tests.train.test_run_inputs import _tree

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore")]


def invoke(*args: object) -> tuple[int, str]:
    """`bbuvl ARGS`: (exit code, output with its whitespace as single spaces)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_copied_elsewhere_resumes_from_its_own_checkpoint_and_writes_only_there(run_config, tmp_path,
                                                                                     monkeypatch):
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(run_config("data.val=null", "training.max_steps=1", "training.save_steps=1")),
                      encoding="utf-8")
    code, said = invoke("train", config)
    assert code == 0, said
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copytree(tmp_path / "run", work / "run2", symlinks=True)
    original = _tree(tmp_path / "run")
    monkeypatch.chdir(work)  # the copy named relative to another working folder
    code, said = invoke("train", config, "training.output_dir=run2", "training.max_steps=2", "--resume")
    assert code == 0, said
    assert _tree(tmp_path / "run") == original  # the original run is not touched
    history = json.loads((work / "run2" / "history.json").read_text("utf-8"))
    assert max(h["step"] for h in history) == 2
    assert (work / "run2" / "checkpoint-2" / "run_record.json").is_file() and (work / "run2" / "final").is_dir()


@pytest.mark.parametrize("edited", ["data.train", "data.hierarchy"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_after_a_data_file_or_the_hierarchy_was_edited_in_place_is_refused_naming_it(
        run_config, small_dataset, tmp_path, edited):
    shutil.copytree(small_dataset, tmp_path / "data")
    hierarchy = tmp_path / "hierarchy.json"
    shutil.copy(DEFAULT_HIERARCHY, hierarchy)  # the shipped one, as the run's own file
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(run_config(
        f"data.train={tmp_path / 'data' / 'train.jsonl'}", f"data.teachers={tmp_path / 'data' / 'teachers.jsonl'}",
        f"data.hierarchy={hierarchy}", "data.val=null", "training.max_steps=1", "training.save_steps=1")),
        encoding="utf-8")
    code, said = invoke("train", config)
    assert code == 0, said
    if edited == "data.train":
        path = tmp_path / "data" / "train.jsonl"
        lines = path.read_text("utf-8").splitlines(keepends=True)
        path.write_text("".join(lines[:-1]), encoding="utf-8")  # the same name, a line fewer
    else:
        path, tree = hierarchy, json.loads(hierarchy.read_text("utf-8"))
        first = next(iter(tree["categories"].values()))
        first["gloss"] += " (edited)"  # the same name, another word in it
        hierarchy.write_text(json.dumps(tree, ensure_ascii=False), encoding="utf-8")
    before = _tree(tmp_path / "run")
    code, said = invoke("train", config, "training.max_steps=2", "--resume")
    assert code == 2 and f"{edited} '{path}': its content changed" in said, said
    assert _tree(tmp_path / "run") == before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_lora_resume_from_another_folder_than_its_relative_base_says_where_it_looked(run_config, tiny_model_dir,
                                                                                     tmp_path, monkeypatch):
    """'model.path base: no such folder ... put the base back there' read as if the base were gone, where the same
    relative config was only resumed from another working folder."""
    from bbuvl.train.trainer import train

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    shutil.copytree(tiny_model_dir, work / "base")
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    lora = ("model.path=base", "model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "data.val=null",
            "training.save_steps=1")
    train(run_config(*lora, "training.max_steps=1"), progress=False)
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ValueError, match=rf"^model.path base: no such folder \(looked for from {elsewhere}\), and this "
                                         "LoRA run's checkpoints hold only its adapters"):
        train(run_config(*lora, "training.max_steps=2"), resume=True, progress=False)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_grpo_resume_with_a_kl_term_from_another_folder_than_its_relative_start_says_where_it_looked(
        grpo_config, trained_checkpoint, tmp_path, monkeypatch):
    from bbuvl.rl.trainer import train_grpo

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    shutil.copytree(trained_checkpoint, work / "start")
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    run = ("model.path=start", "grpo.beta=0.1", "training.save_steps=1", f"training.output_dir={tmp_path / 'grpo'}")
    train_grpo(grpo_config(*run, "training.max_steps=1"), progress=False)
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ValueError, match=rf"^model.path start: no such folder \(looked for from {elsewhere}\), and "
                                         r"this run's KL term \(grpo.beta 0.1\)"):
        train_grpo(grpo_config(*run, "training.max_steps=2"), resume=True, progress=False)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_resume_of_a_relative_output_dir_or_checkpoint_from_another_folder_says_where_it_looked(
        run_config, tmp_path, monkeypatch):
    """`--resume` of `training.output_dir: runs/a` read 'does not exist', and `--resume-from runs/a/checkpoint-1`
    'no such folder', where the command only ran in another folder than the run was trained from."""
    from bbuvl.train.run_dir import RunDirError
    from bbuvl.train.trainer import train

    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    relative = ("training.output_dir=runs/a", "data.val=null", "training.save_steps=1")
    train(run_config(*relative, "training.max_steps=1"), progress=False)
    monkeypatch.chdir(elsewhere)
    with pytest.raises(RunDirError, match=rf"^--resume: training.output_dir runs/a does not exist \(looked for from "
                                          rf"{elsewhere}\), so there is no run to continue"):
        train(run_config(*relative, "training.max_steps=2"), resume=True, progress=False)
    with pytest.raises(RunDirError, match=rf"^--resume-from runs/a/checkpoint-1: cannot resume from it \(no such folder "
                                          rf"\(looked for from {elsewhere}\)\)"):
        train(run_config(*relative, "training.max_steps=2", f"training.output_dir={tmp_path / 'b'}"),
              resume="runs/a/checkpoint-1", progress=False)
