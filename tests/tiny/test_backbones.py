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


def test_overwrite_refuses_a_file_put_into_its_folder_since_and_still_replaces_its_own_edited(tmp_path):
    from bbuvl.cli import app as bbuvl  # which records what a command wrote as its own when it ends

    out = tmp_path / "clip"

    def write(*more: str):
        return CliRunner().invoke(bbuvl, ["fewshot", "tiny-backbone", "clip", str(out), *more], env={"COLUMNS": "400"})
    assert (first := write()).exit_code == 0, first.output
    written = (out / "config.json").read_text(encoding="utf-8")
    (out / "config.json").write_text("{}", encoding="utf-8")  # its own: --overwrite gives it up, as before
    (out / "README.md").write_text("mine", encoding="utf-8")
    (tmp_path / "beside.txt").write_text("mine", encoding="utf-8")

    r = write("--overwrite")
    # Before: exit 0, README.md deleted with the folder (the ledger still named the command).
    assert r.exit_code == 2, r.output
    assert f"{out}: holds README.md, which `bbuvl fewshot tiny-backbone` did not write" in " ".join(r.output.split())
    assert (out / "README.md").read_text(encoding="utf-8") == "mine"

    (out / "README.md").unlink()
    assert (again := write("--overwrite")).exit_code == 0, again.output
    assert (out / "config.json").read_text(encoding="utf-8") == written
    assert (tmp_path / "beside.txt").read_text(encoding="utf-8") == "mine"
