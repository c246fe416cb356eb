"""Workflows of several `bbuvl data` commands, where a later step meets what an earlier one left: an output given as
the input of the same step."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bbuvl.cli.data import app
from bbuvl.synthetic.dataset import synthesize


def run(*args: str | Path) -> tuple[int, str]:
    """`bbuvl data ARGS`: the exit code and what it printed, joined onto one line."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def test_convert_given_its_own_output_names_it_a_dataset_folder_and_writes_nothing(tmp_path: Path):
    synthesize(tmp_path / "export [站点 1]", 6, 0, seed=2, size=(160, 120), fmt="vendor")
    first, again = tmp_path / "ds", tmp_path / "again"
    code, said = run("convert", tmp_path / "export [站点 1]", first, "--workers", "1", "--teachers", "1")
    assert code == 0, said
    code, said = run("convert", first, again, "--workers", "1")
    assert code == 2, said
    assert f"{first}: a dataset folder (it holds train.jsonl), converted already" in said, said
    assert "no image named" not in said and "no photo under" not in said, said
    assert not again.exists()


def test_an_export_holding_a_stray_train_jsonl_is_still_converted(tmp_path: Path):
    export = tmp_path / "export"
    synthesize(export, 4, 0, seed=2, size=(160, 120), fmt="vendor")
    (export / "train.jsonl").write_text("", encoding="utf-8")  # a file of the user's among the platform's
    code, said = run("convert", export, tmp_path / "ds", "--workers", "1", "--teachers", "1", "--val-ratio", "0")
    assert code == 0, said
    assert len((tmp_path / "ds" / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 4
