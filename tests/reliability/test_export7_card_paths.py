"""The model card names the checkpoint and the validation photos by paths a reader copies whole, whatever the folders
are called: a backtick in a folder's name closed the inline code early and the rest rendered as Markdown."""

from __future__ import annotations

from pathlib import Path

from markdown_it import MarkdownIt

from bbuvl.config import Config
from bbuvl.data.coords import CoordinateContract
from bbuvl.model.checkpoint import ModelFolder, Prompt
from bbuvl.model.export import ExportResult, PartCost, Scores
from bbuvl.model.model_card import model_card
from bbuvl.paths import real_path


def test_the_card_shows_a_checkpoint_and_val_path_holding_backticks_and_markdown_verbatim(tmp_path: Path):
    run = tmp_path / "run `v2` *best*" / "final"
    val = tmp_path / "data ``x``" / "val_[a]_.jsonl"
    run.mkdir(parents=True)
    val.parent.mkdir()
    prompt, contract = Prompt("找出每个部件。", ["线缆"], "zh"), CoordinateContract(family="qwen2_5_vl")
    same = Scores(0.5, 0.5, 0.5)
    cost = PartCost("vision_positions.safetensors", str(val), 2, same, same, 0)
    card = model_card(ModelFolder(run, True, Config(), prompt, contract), contract, prompt, Config(),
                      ExportResult(tmp_path / "out", "qwen2_5_vl", False, costs=[cost]))
    tokens = MarkdownIt("commonmark").parse(card)
    code = [c.content.strip() for t in tokens if t.type == "inline" for c in (t.children or []) if c.type == "code_inline"]
    # Before: `/tmp/.../run `v2` *best*/final` showed as the code '/tmp/.../run ', the text 'v2', and more code.
    assert str(real_path(run)) in code and str(real_path(val)) in code, code
