"""Rich turns `:name:` into an emoji by default, and escaping markup does not stop it: `--device cuda:abc` was refused
as 'cuda🔤 not a device name', a photo `site:x:1.jpg` named as 'site❌1.jpg', a label `螺丝:ok:` shown as '螺丝🆗'.
Text from the user or the data is printed as typed."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


def test_an_option_is_named_as_typed(trained_checkpoint, small_dataset, tmp_path):
    refused(invoke(["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "-o", tmp_path / "p.jsonl",
                    "--device", "cuda:abc"]), "--device cuda:abc: not a device name")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_is_named_as_typed(trained_checkpoint, small_dataset, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "site:x:1.jpg").write_bytes(b"not a photo")
    (photos / "ok.png").write_bytes(next((small_dataset / "images").iterdir()).read_bytes())
    r = invoke(["predict", "-c", trained_checkpoint, "-i", photos, "-o", tmp_path / "pred.jsonl", "--mode", "head",
                "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "error: site:x:1.jpg: not an image" in " ".join(r.output.split()), r.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_label_is_shown_as_typed(tmp_path):
    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "a.png")
    box = [4.0, 4.0, 30.0, 30.0]
    (tmp_path / "gt.jsonl").write_text(json.dumps({"images": ["a.png"], "width": 64, "height": 48, "objects": [
        {"bbox_2d": box, "desc": "螺丝:ok:"}]}, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_path / "pred.jsonl").write_text(json.dumps({"image": "a.png", "width": 64, "height": 48, "objects": [
        {"bbox_2d": box, "label": "螺丝:ok:", "score": 0.9}]}, ensure_ascii=False) + "\n", encoding="utf-8")
    r = invoke(["eval", "--pred", tmp_path / "pred.jsonl", "--gt", tmp_path / "gt.jsonl", "--out", tmp_path / "m.json"])
    assert r.exit_code == 0, r.output
    assert "螺丝:ok:" in r.output and "🆗" not in r.output
