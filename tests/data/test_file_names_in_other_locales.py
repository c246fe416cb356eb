"""A dataset made in a UTF-8 locale (a photo `红.jpg`) read where file names are not UTF-8 (LC_ALL=C with PYTHONUTF8=0,
zh_CN.GBK): what fails is said to be the locale's doing, with the fix (a UTF-8 locale, or PYTHONUTF8=1). `data check`
ended in a UnicodeEncodeError traceback, viz said "none of the photos is there" of a photo that was, and a name whose
bytes are UTF-8 was called "not UTF-8", with a `convmv -f gbk -t utf-8` that would have spelt it twice over."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bbuvl.synthetic.dataset import synthesize
from tests.locales import bbuvl, c_locale, gbk_locale, python

FIX = "run in a UTF-8 locale (LC_ALL=C.UTF-8) or with PYTHONUTF8=1"


@pytest.fixture(scope="module")
def red_dataset(tmp_path_factory) -> Path:
    """A one-photo val.jsonl whose photo is `images/红.jpg`, named in UTF-8 bytes."""
    root = tmp_path_factory.mktemp("red")
    synthesize(root / "ds", 0, 1, seed=1, size=(160, 120), num_teachers=0)
    data = root / "ds" / "val.jsonl"
    record = json.loads(data.read_text(encoding="utf-8"))
    os.rename(root / "ds" / record["images"][0], root / "ds" / "images" / "红.jpg")
    record["images"] = ["images/红.jpg"]
    data.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    return data


@pytest.fixture(scope="module")
def gbk(tmp_path_factory) -> dict[str, str]:
    return gbk_locale(tmp_path_factory.mktemp("locale"))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_data_check_where_the_locale_cannot_spell_a_photo_name_names_its_line_and_the_fix(red_dataset):
    code, out = bbuvl(c_locale(), "data", "check", red_dataset)
    assert code == 1 and "Traceback" not in out, out
    assert (f"{red_dataset}:1: image images/\\u7ea2.jpg: a name this system's file-name encoding (ascii) cannot spell"
            in out and FIX in out), out


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_viz_where_the_locale_spells_a_photo_name_otherwise_says_it_is_there_in_utf8(red_dataset, gbk, tmp_path):
    code, out = bbuvl(gbk, "viz", red_dataset, tmp_path / "pictures")
    assert code == 2, out  # "none of the 1 photo(s) to draw is there", and no reason
    assert "红.jpg; the file is there under the UTF-8 bytes of its name, but this system spells file names in gbk" in out
    assert FIX in out, out
    code, out = bbuvl(c_locale(), "viz", red_dataset, tmp_path / "pictures")
    assert code == 2 and "\\u7ea2.jpg; it is a name this system's file-name encoding (ascii) cannot spell" in out, out


@pytest.mark.parametrize("locale", ["C", "zh_CN.GBK"])
def test_a_photo_name_in_utf8_read_in_another_locale_is_said_to_be_that_not_to_be_renamed(tmp_path, gbk, locale):
    (tmp_path / "红.jpg").write_bytes(b"")
    said = python(c_locale() if locale == "C" else gbk,
                  "import os; from bbuvl.data.text import not_text; print(not_text(os.listdir('.')[0]))", cwd=tmp_path)
    shown = "" if locale == "C" else " (as '绾\\xa2.jpg')"  # GBK reads the first two bytes as 绾
    assert said == (f"'红.jpg' is a file name in UTF-8, but this system reads file names as "
                    f"{'ascii' if locale == 'C' else 'gbk'}{shown}: {FIX}"), said  # was: convmv -f gbk -t utf-8
