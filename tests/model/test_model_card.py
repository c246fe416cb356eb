"""The model card shows the prompt and the labels verbatim, whatever they hold: a deployer copies them from it."""

from __future__ import annotations

from pathlib import Path

from markdown_it import MarkdownIt

from bbuvl.config import Config
from bbuvl.data.coords import CoordinateContract
from bbuvl.model.checkpoint import ModelFolder, Prompt
from bbuvl.model.export import ExportResult, PartCost, Scores
from bbuvl.model.model_card import model_card


def test_a_prompt_and_labels_holding_markdown_are_shown_verbatim(tmp_path: Path):
    # A system prompt holding four backticks closed the fixed ```` fence early: the rest of the prompt rendered as
    # Markdown; labels were list items, so `*`, `_`, `<b>` and `#` in one were rendered, not shown.
    system = "找出每个部件。\n````\n# 不是标题\n*不是强调* <b>x</b> `y`"
    labels = ["线缆", "a*b*c", "<b>bold</b>", "# hash", "`tick`", "x``y", "snake_case_label_"]
    prompt = Prompt(system, labels, "zh")
    contract = CoordinateContract(family="qwen2_5_vl")
    folder = ModelFolder(tmp_path / "ckpt", True, Config(), prompt, contract)
    card = model_card(folder, contract, prompt, Config(), ExportResult(tmp_path / "out", "qwen2_5_vl", False))
    tokens = MarkdownIt("commonmark").parse(card)
    fences = [t for t in tokens if t.type == "fence"]
    assert fences[0].info == "text" and fences[0].content == system + "\n"
    items = [t for t in tokens if t.type == "inline" and t.map and "## Labels" not in t.content]
    shown = [c.content for t in items for c in (t.children or []) if c.type == "code_inline" and len(t.children) == 1]
    assert all(label in shown for label in labels), shown
    assert not any(t.type in ("html_inline", "em_open") for t in tokens[tokens.index(fences[0]) + 1:]
                   for t in ([t] + (t.children or [])) if t.type != "fence")


def test_the_card_names_the_checkpoint_it_was_exported_from_where_it_is(tmp_path: Path, monkeypatch):
    from bbuvl.paths import real_path

    (tmp_path / "run" / "final").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    prompt, contract = Prompt("找出每个部件。", ["线缆"], "zh"), CoordinateContract(family="qwen2_5_vl")
    folder = ModelFolder(Path("run/final"), True, Config(), prompt, contract)
    same = Scores(0.5, 0.5, 0.5)
    cost = PartCost("vision_positions.safetensors", "data/val.jsonl", 2, same, same, 0)
    card = model_card(folder, contract, prompt, Config(),
                      ExportResult(tmp_path / "out", "qwen2_5_vl", False, costs=[cost]))
    # As typed ('run/final', 'data/val.jsonl'), the card sent a reader elsewhere to other files, or to none.
    assert f"Exported by `bbuvl model export` from `{real_path(tmp_path / 'run' / 'final')}`" in card
    assert f"validation photos (`{real_path(tmp_path / 'data' / 'val.jsonl')}`)" in card
