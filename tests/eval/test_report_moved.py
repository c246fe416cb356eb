"""A report folder `bbuvl eval` wrote is its own wherever it lies: moved elsewhere (or reached from another working
folder) and written again there, it is replaced without --overwrite, as in place. The ledger beside the folder names it
by its path; the report's own ledger, inside it, vouches for each file by its content (docs/outputs.md)."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.cli.evaluate import earlier_report
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import read_predictions
from bbuvl.eval.report import write_report
from bbuvl.data.schema import read_records
from tests.eval.test_report import NO_CJK


@pytest.mark.parametrize("worst", [1, 0])  # --worst 0: no picture to show, and no empty folder nothing vouches for
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_report_moved_elsewhere_is_still_known_as_an_earlier_report_of_evals(eval_files, tmp_path, worst):
    evaluation = evaluate_predictions(read_records(eval_files.gt), eval_files.gt, read_predictions(eval_files.pred),
                                      eval_files.pred)
    metrics = tmp_path / "rep" / "m.json"  # `eval --out rep/m.json --report rep`: the metrics are the run's too
    metrics.parent.mkdir()
    metrics.write_text("{}\n", encoding="utf-8")
    write_report(evaluation, tmp_path / "rep", NO_CJK, worst=worst, also_written=[metrics])
    shutil.move(tmp_path / "rep", tmp_path / "moved")
    assert earlier_report(tmp_path / "moved")  # before: False, so the claim said 'written by someone else'
    (tmp_path / "moved" / "index.html").write_text("edited by hand", encoding="utf-8")
    assert not earlier_report(tmp_path / "moved")  # a file changed since is nobody's, wherever it lies


@pytest.mark.slow  # two reports drawn: ~5 s; the fast test above keeps the decision eval takes
def test_eval_writes_a_report_moved_elsewhere_again_there_without_overwrite(eval_files, tmp_path, monkeypatch):
    def run(report: str, out: str):
        return CliRunner().invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out",
                                        str(tmp_path / out), "--report", report, "--worst", "1"], env={"COLUMNS": "400"})

    assert (first := run(str(tmp_path / "rep"), "m.json")).exit_code == 0, first.output
    (tmp_path / "moved").mkdir()
    shutil.move(tmp_path / "rep", tmp_path / "moved" / "rep")
    monkeypatch.chdir(tmp_path / "moved")  # and named relative to another working folder
    again = run("rep", "m2.json")
    said = " ".join(again.output.split())
    assert again.exit_code == 0 and "report: rep/index.html" in said, said  # before: 'written by someone else'
