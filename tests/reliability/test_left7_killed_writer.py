"""A dataset file missing because the command writing it was killed says so, and to run that command again."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.check import check_dataset
from bbuvl.outputs import lock_path


def test_check_and_stats_of_a_folder_whose_synth_was_killed_name_the_killed_command(tmp_path: Path) -> None:
    # kill -9 of a `data synth` re-run leaves the earlier files set aside (outputs.replacing) and each output's lock
    # file naming it, unheld: check said only 'missing: a dataset folder needs a train.jsonl'.
    d = tmp_path / "d"
    (d / "images").mkdir(parents=True)
    for name in ("train.jsonl", "val.jsonl"):
        lock_path(d / name).write_text("999999 data synth\n", encoding="utf-8")
    said = " ".join(p.message for p in check_dataset(d) if p.severity == "error")
    assert "`bbuvl data synth` (pid 999999) was writing it and ended before it finished" in said, said
    for given in (d / "train.jsonl", d):
        r = CliRunner().invoke(app, ["data", "stats", str(given)])
        text = " ".join(r.output.split())
        assert r.exit_code == 2 and "ended before it finished (killed?): run that command again" in text, r.output
    r = CliRunner().invoke(app, ["data", "tile", str(d), str(tmp_path / "t"), "--grid", "2x2"])
    assert r.exit_code == 2 and "(pid 999999) was writing it" in " ".join(r.output.split()), r.output
