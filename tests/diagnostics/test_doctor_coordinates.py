"""`bbuvl doctor coordinates`: the probe reads the right positions, scores what it should, and the command reports it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bbuvl.cli.doctor import app
from bbuvl.data.schema import read_records
from bbuvl.diagnostics.coordinates import (CoordinateProbe, coordinate_positions, cross_validated_r2, previous_box,
                                          probe_coordinates, probe_rows, verdict)
from bbuvl.diagnostics.probe import dataset_batches
from bbuvl.encode.chat import IGNORE_INDEX, SPAN_STUDENT, answer_objects

pytestmark = pytest.mark.filterwarnings("ignore")


def test_positions_point_at_each_coordinates_first_digit_and_read_the_answers_boxes(predictor, small_dataset):
    records = read_records(small_dataset / "train.jsonl")
    batches = dataset_batches(predictor, small_dataset / "train.jsonl", len(records), 4).batches
    tok = predictor.tokenizer
    found = []
    for batch in batches:
        for row in range(batch.input_ids.shape[0]):
            ids = batch.input_ids[row].tolist()
            sup = ((batch.labels[row] != IGNORE_INDEX) & (batch.span_ids[row] == SPAN_STUDENT)).tolist()
            boxes = coordinate_positions([tok.decode([t]) for t in ids], sup)
            for tokens, values in boxes:
                for t, v in zip(tokens, values):
                    assert tok.decode([ids[t]]) == str(v)[0] and sup[t]  # the number's first digit, in the answer
                    assert not sup[t - 1] or not tok.decode([ids[t - 1]]).isdigit()  # the token before is no digit
            found.append([values for _, values in boxes])
    truth = [[[round(c) for c in o["bbox_2d"]] for o in answer_objects(r, predictor.contract)] for r in records]
    assert found == truth and sum(map(len, truth)) >= 10


def test_a_teacher_answers_boxes_are_not_probed():
    texts = ['[{"bbox_2d": [', "1", "2", ", ", "3", ", ", "4", "5", ", ", "6", ']}]']
    assert coordinate_positions(texts, [True] * len(texts)) == [([1, 4, 6, 9], [12, 3, 45, 6])]
    assert coordinate_positions(texts, [False] * len(texts)) == []


def test_r2_is_one_for_a_linear_code_and_about_zero_for_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    assert cross_validated_r2(x, x @ rng.normal(size=16) + 100.0) > 0.99
    assert cross_validated_r2(x, rng.normal(size=200)) < 0.1
    assert cross_validated_r2(x, np.full(200, 7.0)) == 0.0  # nothing to explain


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_input_embeddings_before_a_number_know_nothing_of_it(predictor, small_dataset):
    batches = dataset_batches(predictor, small_dataset / "train.jsonl", 8, 4).batches
    states, images, values, previous = probe_rows(predictor.model, predictor.tokenizer, batches)
    layers = predictor.model.vlm.config.get_text_config().num_hidden_layers
    assert states.shape[0] == images.shape[0] == values.shape[0] == previous.shape[0] >= 10 and states.shape[1:3] == (layers + 1, 4)
    assert images.shape[1] == layers + 1 and images.shape[2] == states.shape[3]
    probe = probe_coordinates(predictor.model, predictor.tokenizer, batches)
    # Row 0 is the embedding of the token before each number ("[" or ", "): the same for every photo.
    assert all(v < 0.05 for v in probe.r2[0]) and probe.from_written[0] == 0.0
    with pytest.raises(ValueError, match="at least 10"):
        probe_coordinates(predictor.model, predictor.tokenizer, [])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_doctor_coordinates_prints_every_layer_and_writes_json(trained_checkpoint, small_dataset, tmp_path):
    out = tmp_path / "coords.json"
    result = CliRunner().invoke(app, ["coordinates", str(trained_checkpoint), "--data", str(small_dataset / "train.jsonl"),
                                      "--samples", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "answer, input embeddings" in result.output and "image tokens' mean" in result.output and "layer 1" in result.output and "(last)" in result.output
    payload = json.loads(out.read_text())
    assert payload["coordinates"] == ["x1", "y1", "x2", "y2"] and payload["objects"] >= 10
    assert len(payload["r2"]) == len(payload["image_r2"]) >= 2 and all(len(row) == 4 for row in payload["r2"])
    mine = tmp_path / "notes.json"
    mine.write_text("a user's file")
    refused = CliRunner().invoke(app, ["coordinates", str(trained_checkpoint), "--data", str(small_dataset / "train.jsonl"),
                                       "--samples", "8", "--out", str(mine)])
    assert refused.exit_code != 0 and "notes.json" in refused.output and mine.read_text() == "a user's file"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_doctor_coordinates_probes_a_plain_model_folder_with_the_labels_of_its_data(tiny_model_dir, small_dataset,
                                                                                    tmp_path):
    out = tmp_path / "r2.json"
    result = CliRunner().invoke(app, ["coordinates", str(tiny_model_dir), "--data", str(small_dataset / "train.jsonl"),
                                      "--samples", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text(encoding="utf-8"))["objects"] >= 10


@pytest.mark.parametrize("args", [["coordinates"], ["features"], ["memory", "--n", "5"]])
def test_a_plain_model_folder_where_a_checkpoint_is_needed_is_refused_saying_what_is(tiny_model_dir, tmp_path, args):
    out = tmp_path / ("out.json" if args[0] == "coordinates" else "out.png")  # coordinates' --out is JSON, not a plot
    result = CliRunner().invoke(app, [args[0], str(tiny_model_dir), *args[1:], "--out", str(out)])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and "a plain model folder" in said and "give the labels" not in said, result.output
    assert "written by `bbuvl train`" in said


@pytest.fixture(scope="module")
def crowded_photos(tmp_path_factory):
    """24 synthetic photos of about 15 objects each (the scene's own count): answers listed by y1."""
    from bbuvl.synthetic.dataset import synthesize

    out = tmp_path_factory.mktemp("crowded") / "data"
    synthesize(out, 24, 1, seed=3, size=(224, 168), num_teachers=1)
    return out / "train.jsonl"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_untrained_model_on_photos_of_several_objects_is_not_said_to_know_where_boxes_start(
        tiny_model_dir, crowded_photos, tmp_path):
    out = tmp_path / "r2.json"
    result = CliRunner().invoke(app, ["coordinates", str(tiny_model_dir), "--data", str(crowded_photos), "--samples", "24",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text(encoding="utf-8"))
    said = " ".join(result.output.split())
    # Before: y1 read at 0.90 from the untrained last layer and nothing said, the verdict of a model that knows; the
    # box before it in the answer, with its place, gives 0.91 alone
    assert payload["r2"][-1][1] > 0.5 and payload["from_previous"][1] > 0.8
    assert payload["known"] is False and "knows where a box starts" not in said
    assert "the probe reads the answer's order, not where the photo's objects are" in said
    assert "box before it, and its place" in said


def _probe(last: list[float], written: list[float], previous: list[float]) -> CoordinateProbe:
    return CoordinateProbe(objects=300, r2=[[0.0] * 4, last], from_written=written, from_previous=previous,
                           image_r2=[[0.0] * 4] * 2, values=np.zeros((300, 4)))


def test_a_probe_is_judged_against_the_better_baseline_of_what_its_answer_wrote_before():
    # docs/localisation.md's SFT checkpoint on one-shape photos (x1 0.57, y1 0.87): no box before any, no baseline
    one_object = _probe([0.57, 0.87, 0.80, 0.85], [0.0, -0.01, 0.87, 0.88], [-0.01] * 4)
    known, said = verdict(one_object)
    assert known and said.startswith("the last layer knows where a box starts: R² of y1 0.87, where what its answer "
                                     "wrote before it gives 0.00")
    # The same y1 where the box before it explains 0.91 of it: the order, not the photo
    assert verdict(_probe([0.57, 0.87, 0.80, 0.85], [0.0, -0.01, 0.87, 0.88], [0.2, 0.91, 0.0, 0.5]))[0] is False
    # Well past a baseline that explains some: known (0.95 leaves 0.05 of the 0.5 the box before it left)
    assert verdict(_probe([0.1, 0.95, 0.8, 0.8], [0.0, 0.0, 0.5, 0.5], [0.0, 0.5, 0.0, 0.0]))[0] is True
    assert verdict(_probe([0.1, 0.3, 0.8, 0.8], [0.0] * 4, [0.0] * 4)) == (False, (
        "the last layer does not know where a box starts (R² of x1, y1 at most 0.30): generate mode cannot place "
        "boxes yet; its misses are not a matter of spelling digits"))


def test_the_box_before_is_the_answers_own_and_none_for_its_first():
    boxes = [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert previous_box(boxes, 0) == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert previous_box(boxes, 1) == [1.0, 2.0, 3.0, 4.0, 0.0, 1.0]
