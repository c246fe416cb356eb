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
from tests.train.test_run_inputs import _tree

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args: object) -> tuple[int, str]:
    """`bbuvl ARGS`: (exit code, output with its whitespace as single spaces)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


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
