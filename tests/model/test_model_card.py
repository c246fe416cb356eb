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


def test_the_card_says_how_a_stock_processor_frames_a_photo_the_vision_token_budget_shrank_in_training(tmp_path: Path):
    from bbuvl.data.coords import _smart_resize_rule
    from bbuvl.model.export import stock_frame, stock_overshoot

    # The demo recipe's frame: every photo at 64 cells. A 250x170 photo is under min_pixels; a stock processor scales
    # it up to 280x196 (70 tokens) where training, holding the budget, framed it at 252x168 (54).
    trained = CoordinateContract(50176, 50176, max_vision_tokens=64, family="qwen2_5_vl")
    stock = stock_frame(trained)
    cell = trained.factor ** 2
    most = stock_overshoot(stock)
    over = 0
    for w in range(20, 700, 9):
        for h in range(20, 700, 11):
            sh, sw = _smart_resize_rule(h, w, stock.factor, stock.min_pixels, stock.max_pixels)
            tokens = sh * sw // cell
            if tokens > 64:  # the card's rule: those bounds instead
                over += 1
                assert tokens <= most, (w, h)
                sh, sw = _smart_resize_rule(h, w, stock.factor, cell, 64 * cell)
            assert (sw, sh) == trained.model_size((w, h)), (w, h)
    assert over > 0 and trained.model_size((250, 170)) == (252, 168)

    prompt = Prompt("找出每个部件。", ["线缆"], "zh")
    folder = ModelFolder(tmp_path / "ckpt", True, Config(), prompt, trained)
    card = " ".join(model_card(folder, stock, prompt, Config(),
                               ExportResult(tmp_path / "out", "qwen2_5_vl", False)).split())
    # Before: 'Training also capped each photo at 64 vision tokens, which `max_pixels` already holds to.'
    assert f"up to {most} tokens" in card and ("bbu-vl framed it with `min_pixels` 784 and `max_pixels` 50176 "
                                               "instead") in card, card
    assert '"size": {"shortest_edge": 784, "longest_edge": 50176}' in card
    held = CoordinateContract(12544, 50176, max_vision_tokens=1280, family="qwen2_5_vl")
    assert stock_overshoot(stock_frame(held)) is None
    card = model_card(folder, stock_frame(held), prompt, Config(), ExportResult(tmp_path / "out", "qwen2_5_vl", False))
    assert "which `max_pixels` already holds to." in " ".join(card.split())


def test_the_card_says_to_send_a_server_each_photo_upright(tmp_path: Path):
    # The transformers code turned the photo by its EXIF orientation; the vLLM lines said nothing, and a photo sent as
    # its file stores it was answered sideways, its boxes read back as the upright photo's.
    prompt, contract = Prompt("找出每个部件。", ["线缆"], "zh"), CoordinateContract(family="qwen3_vl")
    folder = ModelFolder(tmp_path / "ckpt", True, Config(), prompt, contract)
    card = " ".join(model_card(folder, contract, prompt, Config(),
                               ExportResult(tmp_path / "out", "qwen3_vl", False)).split())
    vllm = card[card.index("With vLLM"):]
    assert "Send each photo upright: turned as its EXIF orientation asks and re-encoded without the tag" in vllm
    assert "upright_rgb(PHOTO)" in vllm


def test_the_card_spells_the_bytes_of_a_folder_named_in_gbk(tmp_path: Path, monkeypatch):
    """Run from a folder named in GBK bytes, the card's paths held lone surrogates: the export failed writing README.md
    once --val had been measured."""
    import os

    work = tmp_path / os.fsdecode("数据".encode("gbk"))
    (work / "run" / "final").mkdir(parents=True)
    monkeypatch.chdir(work)
    prompt, contract = Prompt("找出每个部件。", ["线缆"], "zh"), CoordinateContract(family="qwen2_5_vl")
    same = Scores(0.5, 0.5, 0.5)
    card = model_card(ModelFolder(Path("run/final"), True, Config(), prompt, contract), contract, prompt, Config(),
                      ExportResult(tmp_path / "out", "qwen2_5_vl", False,
                                   costs=[PartCost("vision_positions.safetensors", "val.jsonl", 2, same, same, 0)]))
    card.encode("utf-8")
    assert f"validation photos (`{tmp_path}/\\xca\\xfd\\xbe\\xdd/val.jsonl`)" in card
    assert f"from `{tmp_path}/\\xca\\xfd\\xbe\\xdd/run/final`" in card


def test_the_cards_code_shows_the_model_each_photo_as_bbuvl_predict_does(tmp_path: Path):
    import re

    import numpy as np
    from PIL import Image

    from bbuvl.data.images import load_image
    from tests.exif_photos import (UNPARSABLE_EXIF, jpeg_turned_with_a_make_tag_of_the_wrong_type,
                                   photo_with_an_unparsable_exif_block)

    prompt, contract = Prompt("找出每个部件。", ["线缆"], "zh"), CoordinateContract(family="qwen2_5_vl")
    folder = ModelFolder(tmp_path / "ckpt", True, Config(), prompt, contract)
    card = model_card(folder, contract, prompt, Config(), ExportResult(tmp_path / "out", "qwen2_5_vl", False))
    code = re.search(r"## Use it\n\n```python\n(.*?)\n```", card, re.S).group(1)
    opened = code[code.index("TURNS = "):code.index("return image.convert('RGB')") + len("return image.convert('RGB')")]
    namespace = {"np": np, "Image": Image}
    exec(opened, namespace)
    assert "photo = upright_rgb(PHOTO)" in code
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    turned = Image.Exif()
    turned[0x0112] = 6
    rgb.save(tmp_path / "turned.jpg", exif=turned.tobytes())
    Image.fromarray(rng.integers(0, 65536, (48, 64), dtype=np.uint16)).save(tmp_path / "grey16.png")
    Image.fromarray(rng.integers(0, 65536, (48, 64), dtype=np.uint16)).save(tmp_path / "grey16.tiff")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.choice([0, 128, 255], (48, 64)).astype(np.uint8)))
    rgba.save(tmp_path / "rgba.png")
    rgba.convert("LA").save(tmp_path / "la.png")
    palette = rgb.convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.save(tmp_path / "palette.png", transparency=3)
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    rgb.save(tmp_path / "turned.tiff", exif=turned.tobytes())  # Pillow turns a TIFF itself as it decodes it
    (tmp_path / "wrong_type.jpg").write_bytes(jpeg_turned_with_a_make_tag_of_the_wrong_type())
    for kind, block in UNPARSABLE_EXIF.items():
        for fmt in ("JPEG", "PNG", "WEBP"):
            (tmp_path / f"{kind}.{fmt.lower()}").write_bytes(photo_with_an_unparsable_exif_block(rgb, fmt, block))
    for photo in sorted(tmp_path.glob("*.*")):
        ours = np.asarray(load_image(photo).image.convert("RGB"))
        # Before: `ImageOps.exif_transpose(Image.open(PHOTO)).convert('RGB')`: 16-bit photos nearly white, transparent
        # pixels black where bbu-vl put them on white, so stock transformers answered them otherwise; and a photo
        # whose EXIF a camera wrote damaged, which bbu-vl reads, failed in exif_transpose
        assert np.array_equal(np.asarray(namespace["upright_rgb"](photo)), ours), photo.name
