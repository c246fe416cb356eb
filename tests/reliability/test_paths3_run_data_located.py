"""A run records where its data files really were: configs/base.yaml's `data.teachers: data/teachers.jsonl` was stored
as typed, and `bbuvl predict --mode teachers` run from another folder that held a `data/teachers.jsonl` of its own
showed that file's photos and answers as the teachers, a mix of two datasets, without a word."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.digests import file_digest
from bbuvl.data.labels import DEFAULT_HIERARCHY
from bbuvl.paths import real_path

pytestmark = pytest.mark.usefixtures("one_thread")


def run(*args):
    """A bbuvl command, as typed."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400", "RANK": None, "WORLD_SIZE": None})


@pytest.fixture(scope="module")
def trained_in_one(tiny_model_dir, small_dataset, tmp_path_factory) -> tuple[Path, Path, Path]:
    """A checkpoint trained in `one/` from `data.teachers: data/teachers.jsonl`, and `two/`, whose own
    `data/teachers.jsonl` holds other teachers (its first line alone): (checkpoint, one, two), trained once."""
    from bbuvl.train.trainer import train
    from tests.conftest import run_config_at

    root = tmp_path_factory.mktemp("paths3")
    one, two = root / "one", root / "two"
    for work in (one, two):
        shutil.copytree(small_dataset, work / "data")
        shutil.copy(DEFAULT_HIERARCHY, work / "data" / "hierarchy.json")
    lines = (two / "data" / "teachers.jsonl").read_text("utf-8").splitlines()
    (two / "data" / "teachers.jsonl").write_text(lines[0] + "\n", "utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(one)
        cfg = run_config_at(tiny_model_dir, small_dataset, root / "run")(
            "data.teachers=data/teachers.jsonl", "data.hierarchy=data/hierarchy.json", "data.train=data/train.jsonl",
            "training.max_steps=1")
        return Path(train(cfg, progress=False)["final"]), one, two


@pytest.fixture()
def two_folders(trained_in_one, tmp_path, monkeypatch) -> tuple[Path, Path, Path]:
    """`trained_in_one` with a copy of its checkpoint of this test's own (it may rewrite it), run from `one/`."""
    checkpoint, one, two = trained_in_one
    shutil.copytree(checkpoint, tmp_path / "final")
    monkeypatch.chdir(one)
    return tmp_path / "final", one, two


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_records_its_data_files_where_they_were_and_predict_reads_those_from_another_folder(
        two_folders, small_dataset, tmp_path, monkeypatch):
    checkpoint, one, two = two_folders
    data = yaml.safe_load((checkpoint / "bbuvl.yaml").read_text("utf-8"))["data"]
    assert data["teachers"] == str(real_path(one / "data" / "teachers.jsonl"))
    assert data["hierarchy"] == str(real_path(one / "data" / "hierarchy.json"))
    assert data["train"] == str(real_path(one / "data" / "train.jsonl"))

    monkeypatch.chdir(two)
    out = tmp_path / "p.jsonl"
    done = run("predict", "-c", checkpoint, "-i", small_dataset / "val.jsonl", "-o", out, "--mode", "teachers",
               "--device", "cpu", "--max-new-tokens", "8")
    assert done.exit_code == 0, done.output
    assert f"teachers: {real_path(one / 'data' / 'teachers.jsonl')} (the run config data.teachers)" in done.output
    # The resume key names the teachers file predict showed, by content: the run's, not two/'s.
    options = json.loads(Path(f"{out}.predict.json").read_text("utf-8"))["key"]["options"]
    teachers = one / "data" / "teachers.jsonl"
    assert options["teachers"] == file_digest(teachers, teachers.name).sha256
    assert options["hierarchy"] == file_digest(one / "data" / "hierarchy.json", "hierarchy.json").sha256


def as_older_checkpoint(checkpoint: Path, trained_in: Path) -> Path:
    """Rewrite the checkpoint's run config with its teachers and hierarchy relative, as runs kept them before they
    recorded where their data was; returns that bbuvl.yaml."""
    saved = checkpoint / "bbuvl.yaml"
    text = saved.read_text("utf-8")
    for name in ("teachers.jsonl", "hierarchy.json"):
        text = text.replace(str(real_path(trained_in / "data" / name)), f"data/{name}")
    saved.write_text(text, "utf-8")
    return saved


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_with_relative_data_paths_says_which_file_it_reads_from_another_folder(
        two_folders, small_dataset, tmp_path, monkeypatch, caplog):
    """A checkpoint trained before runs recorded where their data was keeps its paths as typed: still read from the
    folder a command runs in, as before, and now the file read is named."""
    checkpoint, one, two = two_folders
    saved = as_older_checkpoint(checkpoint, one)

    monkeypatch.chdir(two)
    with caplog.at_level(logging.WARNING):
        done = run("predict", "-c", checkpoint, "-i", small_dataset / "val.jsonl", "-o", tmp_path / "p.jsonl",
                   "--mode", "teachers", "--device", "cpu", "--max-new-tokens", "8")
    assert done.exit_code == 0, done.output
    said = [r.getMessage() for r in caplog.records if "relative to a folder it does not record" in r.getMessage()]
    assert len(said) == 2, said  # each once, though predict reads the folder more than once
    teachers = real_path(two / "data" / "teachers.jsonl")
    assert (f"{saved} names data.teachers as data/teachers.jsonl, relative to a folder it does not record (a checkpoint "
            f"trained before runs recorded where their data was): unless --teachers names one, it is read from the "
            f"folder this command runs in, {teachers}, which may not be the file the run trained with") in said
    assert any("data.hierarchy as data/hierarchy.json" in s and "unless --hierarchy names one" in s for s in said), said


def test_eval_names_the_hierarchy_file_an_older_checkpoint_is_judged_with(two_folders, monkeypatch, caplog):
    """eval judges a checkpoint's predictions with its run's hierarchy (`checkpoint_verdict`): an older checkpoint's
    relative data.hierarchy is read from the folder eval runs in, and now said, as predict says it."""
    from bbuvl.infer.verdict import checkpoint_verdict

    checkpoint, one, two = two_folders
    as_older_checkpoint(checkpoint, one)

    monkeypatch.chdir(two)
    with caplog.at_level(logging.WARNING):
        checkpoint_verdict(checkpoint)
    said = [r.getMessage() for r in caplog.records if "relative to a folder it does not record" in r.getMessage()]
    assert len(said) == 1 and "data.hierarchy as data/hierarchy.json" in said[0], said  # teachers play no part
    assert str(real_path(two / "data" / "hierarchy.json")) in said[0]
