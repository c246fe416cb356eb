"""The report as a reviewer opens it, in headless Chromium: everything shown and styled, and labels, photo names and
reasons that carry script shown as text; the page's policy runs none of it even where one is put in unescaped."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from PIL import Image
import pytest

from bbuvl.data.schema import read_records
from bbuvl.eval.fonts import FontChoice
from bbuvl.eval.metrics import evaluate_predictions
from bbuvl.eval.predictions import read_predictions
from bbuvl.eval.report import write_report
from tests.serve.test_page import browser  # noqa: F401 - the headless Chromium fixture

NO_CJK = FontChoice(None, "no CJK font found on this machine: labels are drawn in English")
# Each sets window.pwned to its number if it ever runs.
LABEL = "<img src=x onerror=\"window.pwned=1\">"
NAME = "<svg onload=window.pwned=2>.png"
REASON = "</pre><script>window.pwned=3</script>"
ANSWER = "<a href=\"javascript:window.pwned=4\" id=clickme>answer</a>"
LINK = "<style>body{background:rgb(1,2,3)}</style><base href=\"https://example.invalid/\">"


def hostile_report(root: Path) -> Path:
    """A report whose label, photo name, predictor error (the reason a photo has no answer), unreadable answer and
    another label carry script, a link to script, a style and a base."""
    (root / "ds").mkdir(parents=True)
    names = [NAME, "plain.png", "error.png", "answer.png"]
    rows, lines = [], []
    for i, name in enumerate(names):
        Image.new("RGB", (64, 48), (60 * i, 90, 0)).save(root / "ds" / name, "PNG")
        rows.append({"images": [name], "width": 64, "height": 48,
                     "objects": [{"bbox_2d": [2, 2, 30, 30], "desc": LABEL}, {"bbox_2d": [34, 4, 60, 40], "desc": LINK}]})
        lines.append({"image": name, "width": 64, "height": 48, "raw": None, "error": None,
                      "objects": [{"bbox_2d": [2, 2, 30, 30], "label": LINK, "score": 0.9}]})
    lines[2].update(objects=[], error=REASON)
    lines[3].update(objects=[], raw=ANSWER)
    gt, pred = root / "ds" / "val.jsonl", root / "ds" / "pred.jsonl"
    gt.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pred.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    evaluation = evaluate_predictions(read_records(gt), gt, read_predictions(pred), pred)
    return write_report(evaluation, root / "report", NO_CJK, worst=4)


def opened(browser, page: Path) -> dict:  # noqa: F811
    """What the browser shows of `page`: its text, its pictures (how many, how many decoded), whether any script ran,
    the background of a warning (the page's style applied) and of the body (another style applied)."""
    browser.get(page.as_uri())
    # WebDriver's script runs beside the page's policy, as a reviewer's developer tools would.
    return browser.execute_script(
        "const imgs = [...document.images], warn = document.querySelector('.warn');"
        "return {text: document.body.innerText, images: imgs.length,"
        " decoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length, pwned: window.pwned ?? null,"
        " warn: warn && getComputedStyle(warn).backgroundColor,"
        " body: getComputedStyle(document.body).backgroundColor, base: document.baseURI};")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_report_shows_every_picture_styled_and_hostile_text_as_text(browser, tmp_path):  # noqa: F811
    index = hostile_report(tmp_path)
    page = index.read_text(encoding="utf-8")
    shown = opened(browser, index)
    assert shown["images"] == len(re.findall(r"<img ", page)) and shown["decoded"] == shown["images"] > 2
    assert shown["pwned"] is None and shown["warn"] == "rgb(255, 243, 205)" and shown["body"] == "rgba(0, 0, 0, 0)"
    for text in (LABEL, NAME, REASON, ANSWER, LINK):
        assert text in shown["text"], text


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_label_name_or_reason_put_into_the_page_unescaped_runs_no_script_and_loads_nothing(browser, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    # An escaping slip in a later change: the page as it would be with the data put in as markup.
    index = hostile_report(tmp_path)
    page = index.read_text(encoding="utf-8")
    for text in (LABEL, NAME, REASON, ANSWER, LINK):
        assert html.escape(text) in page, text
        page = page.replace(html.escape(text), text)
    # A photo beside the report, as a slipped <img> or a hostile name pointing at a reviewer's disk would name it.
    page = page.replace("<h1>", f"<img src='{(tmp_path / 'ds' / 'plain.png').as_uri()}' id=far><h1>", 1)
    slipped = index.with_name("slipped.html")
    slipped.write_text(page, encoding="utf-8")
    shown = opened(browser, slipped)
    assert browser.execute_script("const i = document.getElementById('far'); return i.complete && i.naturalWidth") == 0
    browser.find_element(By.ID, "clickme").click()  # a javascript: link a reviewer clicks
    assert browser.execute_script("return window.pwned ?? null") is None and shown["pwned"] is None
    assert shown["body"] == "rgba(0, 0, 0, 0)" and shown["base"] == slipped.as_uri()
    assert shown["warn"] == "rgb(255, 243, 205)"  # the page's own style still applies
