"""What predict and choose-tiles read besides the photos is refused, naming it, before any weights are read: a
missing --checkpoint given with --labels was called "a bbu-vl checkpoint", an empty --teachers file was refused
after the model loaded as if none had been given ("call set_teachers(...)"), and a damaged or empty --gt waited for
the model to load. A copy of the checkpoint with its weights cut short shows the order: reading them fails, naming
them, so a refusal that names the input instead came first."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def cut_weights(trained_checkpoint, tmp_path):
    """A copy of the trained checkpoint whose model.safetensors is cut short: loading it is an error naming it."""
    copy = tmp_path / "cut"
    shutil.copytree(trained_checkpoint, copy)
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:1000])
    return copy


@pytest.mark.parametrize("what", ["missing", "file"])
def test_labels_given_with_a_checkpoint_that_is_no_folder_name_the_checkpoint(tmp_path, what):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["bbu"]), encoding="utf-8")
    checkpoint = tmp_path / "model"
    if what == "file":
        checkpoint.write_text("not a folder", encoding="utf-8")
    photos = tmp_path / "photos"
    photos.mkdir()
    text = refused(invoke(["predict", "-c", checkpoint, "-i", photos, "-o", tmp_path / "p.jsonl", "--labels", labels]),
                   f"{checkpoint}: {'no such' if what == 'missing' else 'a file, not a'} checkpoint folder (--checkpoint)")
    assert "bbu-vl checkpoint" not in text and not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize("content, says", [("", "no photos: the file is empty"),
                                           ('{"images": ["a.jpg"]\n', ":1: invalid JSON")])
def test_an_empty_or_damaged_teachers_file_is_named_before_the_model_loads(cut_weights, small_dataset, tmp_path, content,
                                                                           says):
    teachers = tmp_path / "teachers.jsonl"
    teachers.write_text(content, encoding="utf-8")
    out = tmp_path / "p.jsonl"
    text = refused(invoke(["predict", "-c", cut_weights, "-i", small_dataset / "val.jsonl", "-o", out, "--mode",
                           "teachers", "--teachers", teachers, "--device", "cpu"]), f"{teachers}", says)
    assert "set_teachers" not in text and "model.safetensors" not in text and not out.exists()


@pytest.mark.parametrize("content, says", [("", "no photos: the file is empty"),
                                           ('{"images": ["a.jpg"]\n', ":1: invalid JSON")])
def test_an_empty_or_damaged_gt_is_named_before_choose_tiles_loads_the_model(cut_weights, tmp_path, content, says):
    gt = tmp_path / "val.jsonl"
    gt.write_text(content, encoding="utf-8")
    text = refused(invoke(["choose-tiles", "-c", cut_weights, "--gt", gt, "-o", tmp_path / "scales", "--device", "cpu"]),
                   f"{gt}", says)
    assert "model.safetensors" not in text and not (cut_weights / "tile_scale.json").exists()
