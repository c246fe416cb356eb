"""A checkpoint trained from a config of relative data paths (configs/base.yaml's `data/teachers.jsonl`) keeps them as
typed, and `bbuvl predict --mode teachers` reads its data.teachers from the folder it runs in. Run from another
folder it said '--mode teachers needs --teachers TEACHERS.jsonl', naming neither the run config's file nor where it
was looked for."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def relative_checkpoint(run_config, small_dataset, monkeypatch) -> Path:
    """A checkpoint trained in the dataset's parent folder with `data.teachers: data/teachers.jsonl`."""
    from bbuvl.train.trainer import train

    monkeypatch.chdir(small_dataset.parent)
    cfg = run_config(f"data.teachers={small_dataset.name}/teachers.jsonl", "training.max_steps=1")
    return Path(train(cfg, progress=False)["final"])


def predict(checkpoint: Path, data: Path, out: Path):
    """`bbuvl predict --mode teachers` on the validation photos."""
    return CliRunner().invoke(app, [str(a) for a in ("predict", "-c", checkpoint, "-i", data / "val.jsonl", "-o", out,
                                                     "--mode", "teachers", "--device", "cpu", "--max-new-tokens", "8")],
                              env={"COLUMNS": "400", "RANK": None, "WORLD_SIZE": None})


def test_teachers_of_a_relative_run_path_are_read_from_the_training_folder_and_named_from_another(
        relative_checkpoint, small_dataset, tmp_path, monkeypatch):
    assert f"teachers: {small_dataset.name}/teachers.jsonl" in (relative_checkpoint / "bbuvl.yaml").read_text("utf-8")
    there = predict(relative_checkpoint, small_dataset, tmp_path / "there.jsonl")
    assert there.exit_code == 0, there.output

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    refused = predict(relative_checkpoint, small_dataset, tmp_path / "p.jsonl")
    assert refused.exit_code == 2, refused.output
    text = " ".join(refused.output.split())
    assert (f"the run config's data.teachers ({small_dataset.name}/teachers.jsonl in "
            f"{relative_checkpoint / 'bbuvl.yaml'}) is not there, looked for from {elsewhere}") in text, text
    assert "pass --teachers TEACHERS.jsonl" in text
    assert not (tmp_path / "p.jsonl").exists()
