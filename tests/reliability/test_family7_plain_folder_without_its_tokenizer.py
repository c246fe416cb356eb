"""A plain model folder (the zero-shot baseline of docs/families.md) copied without its tokenizer is named as such.

transformers builds a tokenizer of the special tokens alone from tokenizer_config.json, so the first error was the
special tokens' check, "model config and tokenizer disagree", which points at the config, not at the missing file.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.tiny.model import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_on_a_plain_folder_without_tokenizer_files_names_them_not_a_token_mismatch(tmp_path):
    folder = build_tiny_model(tmp_path / "Qwen3-VL copy", family="qwen3_vl")
    (folder / "tokenizer.json").unlink()
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 48), "red").save(photos / "a.png")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["挡风板/已安装"], ensure_ascii=False), encoding="utf-8")
    r = CliRunner().invoke(app, ["predict", "-c", str(folder), "--labels", str(labels), "-i", str(photos),
                                 "-o", str(tmp_path / "out.jsonl"), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    assert "no tokenizer (tokenizer.json or vocab.json or tokenizer.model missing)" in r.output, r.output
    assert str(folder) in " ".join(r.output.split()) and "disagree" not in r.output
    assert not (tmp_path / "out.jsonl").exists()
