"""A file put into a report folder `bbuvl eval` wrote is named when eval refuses to write the report there again, and
so are a user's files in a folder given as --report: the refusal said only 'written by someone else' of the folder."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.schema import read_records
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import read_predictions
from bbuvl.eval.report import write_report
from tests.eval.test_report import NO_CJK


def _eval(eval_files, report, out, *more: str):
    return CliRunner().invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out", str(out),
                                    "--report", str(report), "--worst", "0", *more], env={"COLUMNS": "400"})


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_file_put_into_a_report_is_named_in_the_refusal_and_kept(eval_files, tmp_path):
    evaluation = evaluate_predictions(read_records(eval_files.gt), eval_files.gt, read_predictions(eval_files.pred),
                                      eval_files.pred)
    report = tmp_path / "rep"
    write_report(evaluation, report, NO_CJK, worst=0)
    (report / "review notes [draft].txt").write_text("mine", encoding="utf-8")
    result = _eval(eval_files, report, tmp_path / "m.json")
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert (f"error: {report}: holds review notes [draft].txt, which `bbuvl eval` did not write; it writes its report "
            "into a folder of its own (--report): move them out" in said), said
    assert "index.html" not in said.split("holds")[1].split("which")[0]  # the report's own files are not named
    assert (report / "review notes [draft].txt").read_text(encoding="utf-8") == "mine"


def test_a_folder_of_the_users_given_as_report_names_its_files(eval_files, tmp_path):
    mine = tmp_path / "home"
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        (mine / name).parent.mkdir(exist_ok=True)
        (mine / name).write_text(name, encoding="utf-8")
    (mine / "photos").mkdir()
    result = _eval(eval_files, mine, tmp_path / "m.json")
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{mine}: holds a.txt, b.txt, c.txt and 2 more, which `bbuvl eval`" in said, said
    assert sorted(p.name for p in mine.iterdir()) == ["a.txt", "b.txt", "c.txt", "d.txt", "photos"]


@pytest.mark.slow  # two reports drawn: ~5 s; tests/eval/test_report_moved.py keeps the library's part fast
def test_a_report_holding_its_metrics_moved_elsewhere_is_written_again_there_without_overwrite(eval_files, tmp_path):
    assert (first := _eval(eval_files, tmp_path / "rep", tmp_path / "rep" / "m.json")).exit_code == 0, first.output
    (tmp_path / "moved").mkdir()
    shutil.move(tmp_path / "rep", tmp_path / "moved" / "rep")
    again = _eval(eval_files, tmp_path / "moved" / "rep", tmp_path / "moved" / "rep" / "m.json")
    assert again.exit_code == 0, again.output  # before: m.json and m.coco.json were someone else's


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_overwrite_refuses_a_file_put_among_the_pictures_and_still_replaces_its_own_edited(eval_files, tmp_path):
    report = tmp_path / "rep"

    def draw(into, *more: str):
        return CliRunner().invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out",
                                        str(tmp_path / "m.json"), "--report", str(into), "--worst", "1", *more],
                                  env={"COLUMNS": "400"})
    assert (first := draw(report)).exit_code == 0, first.output
    picture = next((report / "worst").iterdir())
    drawn = picture.read_bytes()
    picture.write_bytes(b"edited")  # its own name: --overwrite gives it up, as before
    (report / "worst" / "notes.txt").write_text("mine", encoding="utf-8")
    (tmp_path / "beside.txt").write_text("mine", encoding="utf-8")

    result = draw(report, "--overwrite")
    said = " ".join(result.output.split())
    # Before: exit 0, notes.txt deleted with the worst/ the report swapped in whole.
    assert result.exit_code == 2, said
    assert f"{report / 'worst'}: holds notes.txt, which `bbuvl eval` did not write" in said, said
    assert (report / "worst" / "notes.txt").read_text(encoding="utf-8") == "mine" and picture.read_bytes() == b"edited"

    (report / "worst" / "notes.txt").unlink()
    assert (again := draw(report, "--overwrite")).exit_code == 0, again.output
    assert picture.read_bytes() == drawn
    assert (tmp_path / "beside.txt").read_text(encoding="utf-8") == "mine"

    mine = tmp_path / "home"  # a folder of the user's by the name of a picture folder: deleted whole, before
    (mine / "faults").mkdir(parents=True)
    (mine / "faults" / "keep.txt").write_text("mine", encoding="utf-8")
    result = draw(mine, "--overwrite")
    assert result.exit_code == 2 and f"{mine / 'faults'}: holds keep.txt" in " ".join(result.output.split()), result.output
    assert (mine / "faults" / "keep.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_overwrite_refuses_a_copy_of_a_picture_whose_name_looks_like_the_reports_own(eval_files, tmp_path):
    # Own names were told by a pattern (NNN_<photo>.png), which a Finder-style copy fits: it went with worst/
    report = tmp_path / "rep"

    def draw(*more: str):
        return CliRunner().invoke(app, ["eval", "--pred", str(eval_files.pred), "--gt", str(eval_files.gt), "--out",
                                        str(tmp_path / "m.json"), "--report", str(report), "--worst", "1", *more],
                                  env={"COLUMNS": "400"})
    assert (first := draw()).exit_code == 0, first.output
    picture = next((report / "worst").iterdir())
    copy = picture.with_name(f"{picture.stem} copy.png")
    shutil.copy(picture, copy)

    result = draw("--overwrite")

    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{report / 'worst'}: holds {copy.name}, which `bbuvl eval` did not write" in said
    assert copy.read_bytes() == picture.read_bytes()
