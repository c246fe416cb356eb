"""data stats of a file another command has not finished writing names that command, not a missing file."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bbuvl.cli import app
from tests.reliability.faults import held_elsewhere


def test_data_stats_of_the_train_file_data_synth_is_still_writing_names_the_writer(tmp_path: Path) -> None:
    # The file is written whole at the end (atomic.py), so until then it is not there: 'no such file or folder'
    # sent the user looking for a mistyped name.
    train = tmp_path / "d" / "train.jsonl"
    with held_elsewhere(train, "data synth", pid=4242):
        r = CliRunner().invoke(app, ["data", "stats", str(train)])
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "`bbuvl data synth` (pid 4242) is still writing it" in text, r.output
    assert "no such file" not in text
    r = CliRunner().invoke(app, ["data", "stats", str(train)])  # once it is not written, missing is missing
    assert r.exit_code == 2 and "no such file or folder" in " ".join(r.output.split()), r.output
