"""A checkpoint that keeps relative data paths (configs/base.yaml's `data/teachers.jsonl`, as runs recorded them
before they recorded where their data was) has its data.teachers and data.hierarchy read by `bbuvl predict` and `eval`
from the folder they run in. Run from another folder, predict said '--mode teachers needs --teachers TEACHERS.jsonl',
and 'h.json: No such file or directory' for the hierarchy (eval the same), naming neither the run config's key nor
where the file was looked for."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.labels import DEFAULT_HIERARCHY

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained_relative(tiny_model_dir, small_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, its folder): a checkpoint trained in a folder holding `data/` (a copy of the small dataset, with the
    shipped hierarchy), from `data.teachers: data/teachers.jsonl` and `data.hierarchy: data/hierarchy.json`, once."""
    from bbuvl.train.trainer import train
    from tests.conftest import run_config_at

    root = tmp_path_factory.mktemp("relative")
    work = root / "work"
    shutil.copytree(small_dataset, work / "data")
    shutil.copy(DEFAULT_HIERARCHY, work / "data" / "hierarchy.json")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        cfg = run_config_at(tiny_model_dir, small_dataset, root / "run")(
            "data.teachers=data/teachers.jsonl", "data.hierarchy=data/hierarchy.json", "training.max_steps=1")
        final = Path(train(cfg, progress=False)["final"])
    # A run now records its data where it was; an older one kept the paths as typed.
    run_yaml = final / "bbuvl.yaml"
    text = run_yaml.read_text("utf-8")
    for name in ("teachers.jsonl", "hierarchy.json"):
        recorded = str(work.resolve() / "data" / name)
        assert recorded in text, text
        text = text.replace(recorded, f"data/{name}")
    run_yaml.write_text(text, "utf-8")
    return final, work


@pytest.fixture()
def relative_checkpoint(trained_relative, monkeypatch) -> Path:
    """`trained_relative`'s checkpoint (the tests only read it), run from the folder it was trained in."""
    final, work = trained_relative
    monkeypatch.chdir(work)
    return final


def run(*args):
    """A bbuvl command, as typed."""
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400", "RANK": None, "WORLD_SIZE": None})


def predict(checkpoint: Path, data: Path, out: Path, *more):
    """`bbuvl predict --mode teachers` on the validation photos."""
    return run("predict", "-c", checkpoint, "-i", data / "val.jsonl", "-o", out, "--mode", "teachers", "--device", "cpu",
               "--max-new-tokens", "8", *more)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_teachers_of_a_relative_run_path_are_read_from_the_training_folder_and_named_from_another(
        relative_checkpoint, small_dataset, tmp_path, monkeypatch):
    assert "teachers: data/teachers.jsonl" in (relative_checkpoint / "bbuvl.yaml").read_text("utf-8")
    there = predict(relative_checkpoint, small_dataset, tmp_path / "there.jsonl")
    assert there.exit_code == 0, there.output

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    refused = predict(relative_checkpoint, small_dataset, tmp_path / "p.jsonl", "--hierarchy", DEFAULT_HIERARCHY)
    assert refused.exit_code == 2, refused.output
    text = " ".join(refused.output.split())
    assert (f"the run config's data.teachers (data/teachers.jsonl in "
            f"{relative_checkpoint / 'bbuvl.yaml'}) is not there, looked for from {elsewhere}") in text, text
    assert "pass --teachers TEACHERS.jsonl" in text
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_hierarchy_of_a_relative_run_path_is_named_by_predict_and_eval_from_another_folder(
        relative_checkpoint, small_dataset, tmp_path, monkeypatch):
    there = run("predict", "-c", relative_checkpoint, "-i", small_dataset / "val.jsonl", "-o", tmp_path / "there.jsonl",
                "--mode", "head", "--device", "cpu")
    assert there.exit_code == 0, there.output

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    named = (f"the run config's data.hierarchy (data/hierarchy.json in "
             f"{relative_checkpoint / 'bbuvl.yaml'}) is not there, looked for from {elsewhere}; pass --hierarchy")
    refused = run("predict", "-c", relative_checkpoint, "-i", small_dataset / "val.jsonl", "-o", tmp_path / "p.jsonl",
                  "--mode", "head", "--device", "cpu")
    assert refused.exit_code == 2 and named in " ".join(refused.output.split()), refused.output
    assert not (tmp_path / "p.jsonl").exists()
    scored = run("eval", "--pred", tmp_path / "there.jsonl", "--gt", small_dataset / "val.jsonl", "--out", tmp_path / "m.json")
    assert scored.exit_code == 2 and named in " ".join(scored.output.split()), scored.output
    assert not (tmp_path / "m.json").exists()
