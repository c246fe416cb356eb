"""A report made with paths typed relative to another working folder, then moved: the page names its predictions,
ground truth, baseline and model by paths a reviewer elsewhere can find, and every link it holds still resolves."""

from __future__ import annotations

import html
import re
import shutil

import pytest
from typer.testing import CliRunner

from tests.eval.test_judging import app, files  # noqa: F401 - 4 photos predicted by a checkpoint, and eval's app


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_report_made_from_another_folder_names_real_paths_and_its_links_hold_once_moved(files, tmp_path,  # noqa: F811
                                                                                      monkeypatch):
    gt, pred, ckpt = files
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = CliRunner().invoke(app, ["eval", "--pred", "../pred.jsonl", "--gt", "../val.jsonl", "--out", "m.json"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["eval", "--pred", "../pred.jsonl", "--gt", "../val.jsonl", "--out", "m2.json",
                                      "--baseline", "m.json", "--report", "rep2", "--worst", "4"])
    assert result.exit_code == 0, result.output
    moved = tmp_path / "mailed"
    shutil.move(work / "rep2", moved)
    page = (moved / "index.html").read_text(encoding="utf-8")
    header = page[page.index("<h1>"):page.index("</p>")]
    # As typed ('../pred.jsonl against ../val.jsonl'), they named nothing to a reviewer who was not in work/.
    for named in (pred, gt, f"predicted by {ckpt} in mode head"):
        assert html.escape(str(named)) in header, header
    assert "../" not in header and f"<p>{html.escape(str(work / 'm.json'))}</p>" in page
    links = re.findall(r"href='([^']+)'", page)
    assert len(links) >= 2 and all((moved / html.unescape(a)).is_file() for a in links)
