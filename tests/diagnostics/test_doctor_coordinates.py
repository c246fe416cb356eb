"""`bbuvl doctor coordinates`: the probe reads the right positions, scores what it should, and the command reports it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from bbuvl.cli.doctor import app
from bbuvl.data.schema import read_records
from bbuvl.diagnostics.coordinates import coordinate_positions, cross_validated_r2, probe_coordinates, probe_rows
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


def test_the_input_embeddings_before_a_number_know_nothing_of_it(predictor, small_dataset):
    batches = dataset_batches(predictor, small_dataset / "train.jsonl", 8, 4).batches
    states, images, values = probe_rows(predictor.model, predictor.tokenizer, batches)
    layers = predictor.model.vlm.config.get_text_config().num_hidden_layers
    assert states.shape[0] == images.shape[0] == values.shape[0] >= 10 and states.shape[1:3] == (layers + 1, 4)
    assert images.shape[1] == layers + 1 and images.shape[2] == states.shape[3]
    probe = probe_coordinates(predictor.model, predictor.tokenizer, batches)
    # Row 0 is the embedding of the token before each number ("[" or ", "): the same for every photo.
    assert all(v < 0.05 for v in probe.r2[0]) and probe.from_written[0] == 0.0
    with pytest.raises(ValueError, match="at least 10"):
        probe_coordinates(predictor.model, predictor.tokenizer, [])


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
