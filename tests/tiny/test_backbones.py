"""`fewshot tiny-backbone`: random-weight backbones saved like real checkpoints, loaded back by from_pretrained."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bbuvl.cli.fewshot import app
from bbuvl.fewshot.backbones import load_backbone


@pytest.mark.parametrize("kind, model_type, processor", [
    ("clip", "clip_vision_model", "CLIPImageProcessor"),
    ("dinov2", "dinov2", "BitImageProcessor"),
    ("resnet", "resnet", "ConvNextImageProcessor"),
])
def test_tiny_backbone_writes_config_processor_and_weights_that_load(tmp_path, kind, model_type, processor):
    out = tmp_path / kind
    result = CliRunner().invoke(app, ["tiny-backbone", kind, str(out), "--image-size", "32", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} >= {"config.json", "preprocessor_config.json", "model.safetensors"}
    assert json.loads((out / "config.json").read_text())["model_type"] == model_type
    # saved under the stock name, so a machine with torchvision loads its fast variant and one without the PIL one
    assert json.loads((out / "preprocessor_config.json").read_text())["image_processor_type"] == processor
    bb = load_backbone(str(out))
    assert bb.kind == kind and type(bb.processor).__name__.startswith(processor)
    assert (out / "model.safetensors").stat().st_size < 1_000_000


def test_unknown_kind_is_refused_with_the_choices(tmp_path):
    result = CliRunner().invoke(app, ["tiny-backbone", "vit", str(tmp_path / "x")])
    assert result.exit_code == 2 and "clip, dinov2, resnet" in result.output
