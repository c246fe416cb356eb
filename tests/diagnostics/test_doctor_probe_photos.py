"""`bbuvl doctor features`, `coordinates` and `landscape` on a dataset with photos that cannot be read: each is named
and left out, and no other photo is probed in its place (twice: once for itself), which the probe would read as a
model that knows its boxes."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from bbuvl.cli.doctor import app
from bbuvl.data.schema import read_records
from bbuvl.diagnostics.probe import dataset_batches

pytestmark = pytest.mark.filterwarnings("ignore")
runner = CliRunner()


@pytest.fixture
def damaged(small_dataset, tmp_path):
    """The small training set with line 2's photo deleted and line 4's cut short past its header."""
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()
    records = read_records(data / "train.jsonl")
    (data / records[1].image).unlink()
    cut = data / records[3].image
    cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 2])
    return data / "train.jsonl", len(lines), records


def test_photos_that_cannot_be_read_are_named_and_left_out_and_none_is_probed_twice(predictor, damaged):
    dataset, n, records = damaged
    probe = dataset_batches(predictor, dataset, n, 4)
    assert probe.photos == n - 2 == sum(b.input_ids.shape[0] for b in probe.batches)
    assert [s.split(": ")[0] for s in probe.skipped] == [f"{dataset}:2", f"{dataset}:4"]
    assert f"image {records[1].image}: image file not found" in probe.skipped[0]
    assert probe.skipped[1].startswith(f"{dataset}:4: image {records[3].image}: cannot decode image")


def test_the_probe_takes_the_next_readable_photos_up_to_the_number_asked(predictor, damaged):
    dataset, n, _ = damaged
    probe = dataset_batches(predictor, dataset, 2, 2)  # lines 1 and 3: line 4 is never read
    assert probe.photos == 2 and [s.split(": ")[0] for s in probe.skipped] == [f"{dataset}:2"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_doctor_features_says_how_many_photos_it_looked_at_and_which_it_left_out(trained_checkpoint, damaged, tmp_path):
    dataset, n, records = damaged
    result = runner.invoke(app, ["features", str(trained_checkpoint), "--data", str(dataset), "--samples", str(n),
                                 "--out", str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    # the table's title wraps at the terminal's width, a long path anywhere in it
    assert f"on{n - 2}photosof{dataset}" in "".join(result.output.split())
    assert f"{dataset}:2: image {records[1].image}: image file not found: left out" in said


def test_a_dataset_none_of_whose_photos_can_be_read_is_an_error_naming_the_first(predictor, small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    shutil.rmtree(data / "images")
    with pytest.raises(ValueError, match=rf"{data / 'val.jsonl'}: none of its 2 photos can be read, the first "
                                         rf"{data / 'val.jsonl'}:1: image .*: image file not found"):
        dataset_batches(predictor, data / "val.jsonl", 8, 2)


@pytest.fixture
def no_parts(small_dataset, tmp_path):
    """The small validation set with every object taken out, its photos named where they are."""
    gt = tmp_path / "no_parts.jsonl"
    lines = (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()
    gt.write_text("".join(json.dumps({**json.loads(line), "objects": [],
                                      "images": [str(small_dataset / json.loads(line)["images"][0])]},
                                     ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return gt


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_doctor_features_on_photos_without_parts_says_the_caption_decoder_saw_nothing(trained_checkpoint, no_parts,
                                                                                     tmp_path):
    gt = no_parts
    result = runner.invoke(app, ["features", str(trained_checkpoint), "--data", str(gt), "--out", str(tmp_path / "f.png")])
    # Before: a RuntimeError from min() over the caption decoder's zero rows, its traceback and no table.
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "note: no value reached caption_decoder.0.ffn" in said and "caption_decoder (output) on these photos" in said
    assert "box_head.0 (relu)" in said and (tmp_path / "f.png").stat().st_size > 0


def test_doctor_coordinates_on_photos_without_parts_says_how_many_photos_held_no_box(trained_checkpoint, no_parts):
    gt = no_parts
    result = runner.invoke(app, ["coordinates", str(trained_checkpoint), "--data", str(gt)])
    assert result.exit_code == 2, result.output
    # Before: 'the answers held 0 boxes ...: pass more photos', as if the two photos had been too few.
    assert ("error: the answers of the 2 photos probed held 0 boxes; the probe needs at least 10: pass more "
            "photos with objects") in " ".join(result.output.split())
