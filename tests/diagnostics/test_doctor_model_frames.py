"""`bbuvl doctor model` renders the chat template with the photo at its model-frame size, as the encoder hands it to
the image processor: a frame under the processor's min_pixels (model.min_pixels = max_pixels, as configs/demo_shapes.yaml
sets them, with a token budget that shrinks the frame) is not resized a second time into a false failure."""

from __future__ import annotations

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.doctor import app

pytestmark = pytest.mark.filterwarnings("ignore")


def test_a_frame_under_min_pixels_passes_the_chat_template_check(tiny_model_dir, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"model:\n  path: {tiny_model_dir}\n  min_pixels: 50176\n  max_pixels: 50176\n"
                      "  max_vision_tokens: 64\n", encoding="utf-8")
    photo = tmp_path / "photo.png"
    Image.new("RGB", (640, 480), (30, 120, 200)).save(photo)  # framed 252x168: 42,336 pixels, under min_pixels
    result = CliRunner().invoke(app, ["model", str(tiny_model_dir), "--config", str(config), "--image", str(photo)],
                                env={"COLUMNS": "300"})
    said = " ".join(result.output.split())
    assert "encoder ids = chat template ids" in said, said
    assert result.exit_code == 0 and "all checks passed" in said, said
