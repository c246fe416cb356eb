"""`fewshot eval` says which queries are crops with a support image's very pixels (the support cut from the queries'
own dataset), and says nothing of new photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.fewshot import app
from bbuvl.fewshot.copies import SupportCopies
from bbuvl.fewshot.embed import ImageItem


def _eval(support, query, out, backbone="pixels:8") -> dict:
    result = CliRunner().invoke(app, [str(a) for a in (
        "eval", "--support", support, "--query", query, "--backbone", backbone, "--level", "1", "--shots", "1,all",
        "--thresholds", "0.5", "--out", out, "--no-cache")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("backbone", ["pixels:8", "clip"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_queries_cut_from_the_photos_the_support_was_cut_from_are_said(part_crops, tiny_backbones, tmp_path, backbone):
    from bbuvl.fewshot.crops import write_crops

    spec = tiny_backbones.get(backbone, backbone)
    support = tmp_path / "support"
    counts = write_crops(part_crops.data / "train.jsonl", support, per_class=2, level=1)
    said = [w for w in _eval(support, part_crops.data / "train.jsonl", tmp_path / "a", spec)["warnings"]
            if "support images themselves" in w]
    # Every support crop is one of train.jsonl's boxes; before, their scores counted as new photos' without a word
    assert len(said) == 1 and said[0].startswith(f"{sum(counts.values())} of "), said
    assert "train.jsonl:" in said[0] and str(support) in said[0]
    assert not [w for w in _eval(support, part_crops.data / "val.jsonl", tmp_path / "b", spec)["warnings"]
                if "support images themselves" in w]


def test_a_query_its_backbone_cannot_tell_from_a_support_image_is_no_copy_unless_its_pixels_are(tmp_path):
    support = tmp_path / "s.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(support)
    other = tmp_path / "q.png"
    Image.new("RGB", (8, 8), (11, 20, 30)).save(other)
    copies = SupportCopies([support], np.ones((1, 4), np.float32))
    same = [ImageItem(support, origin="same"), ImageItem(other, origin="other")]
    assert copies.find(same, np.ones((2, 4), np.float32)) == [("same", support)]  # one vector for both
