"""The system prompt groups each data label under its category, with the category's cue, however it is typed."""

from __future__ import annotations

from bbuvl.data.labels import Hierarchy
from bbuvl.encode.prompts import system_prompt


def test_a_label_typed_with_spaces_or_in_english_is_listed_under_its_category_and_cue():
    # Before: '螺丝连接点 / BBU安装螺丝 / 连接正确' was a category of its own, listed last without a cue.
    h = Hierarchy.load()
    spaced, plain = "螺丝连接点 / BBU安装螺丝 / 连接正确", "螺丝连接点/CPRI光缆和BBU连接点/连接正确"
    lines = system_prompt([plain, spaced, "线缆"], h, "zh").splitlines()
    groups = [line for line in lines if line.startswith("- ")]
    cue = h.categories["螺丝连接点"].cue_zh
    assert groups[0] == f"- 螺丝连接点：{cue}；标签：{plain}, {spaced}", groups
    assert len(groups) == 2
    english = system_prompt(["ｓｃｒｅｗ or connection point/BBU mounting screw/correct"], h, "en")
    assert f"- screw or connection point: {h.categories['螺丝连接点'].cue_en}; labels:" in english
