"""`bbuvl serve --tiles`: the server answers with tiles exactly as `bbuvl predict --tiles` writes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app as cli
from tests.serve.conftest import cli_server

TILES = ["--mode", "head", "--tiles", "2x2", "--tile-zoom", "1.5", "--tile-stride", "0.75", "--device", "cpu"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_serve_with_tiles_answers_as_predict_with_tiles_does(trained_checkpoint, photos, tmp_path):
    photo = photos[-1]
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / photo.name).write_bytes(photo.read_bytes())
    out = tmp_path / "pred.jsonl"
    r = CliRunner().invoke(cli, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out), *TILES])
    assert r.exit_code == 0, r.output
    assert "tiles 2x2, its tiles" in r.output and "at most 0.75 of a side apart + the whole photo" in r.output
    assert "vision tokens" in r.output  # the cost, said before the run
    expected = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    plain = tmp_path / "plain.jsonl"
    r = CliRunner().invoke(cli, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(plain), "--mode",
                                 "head", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads(plain.read_text(encoding="utf-8"))["objects"] != expected["objects"]  # tiles changed the answer

    with cli_server(["-c", str(trained_checkpoint), *TILES], tmp_path / "serve.log") as (client, _):
        detect = client.detect_file(photo)
    assert detect.status == 200, detect.body
    got = detect.json()
    assert got["model"]["tiles"] == {"grid": "2x2", "zoom": 1.5, "stride": 0.75, "whole": True, "zoom_into": [], "refine": []}
    assert [(o["bbox_2d"], o["label"], o["score"]) for o in got["objects"]] == \
        [(o["bbox_2d"], o["label"], o["score"]) for o in expected["objects"]]
    # Predicted through tiles, so judged by the tiled photos' thresholds, and said so as predict's line says it.
    assert got["tiled"] is expected["tiled"] is True and got["verdict"] == expected["verdict"]


def test_serve_refuses_a_bad_tile_grid_before_listening(trained_checkpoint, tmp_path):
    r = CliRunner().invoke(cli, ["serve", "-c", str(trained_checkpoint), "--tiles", "2by2", "--device", "cpu"])
    assert r.exit_code == 2 and "COLSxROWS" in r.output
    r = CliRunner().invoke(cli, ["serve", "-c", str(trained_checkpoint), "--tile-stride", "0.1", "--device", "cpu"])
    assert r.exit_code == 2 and "--tile-stride" in r.output and "0.1" in r.output
    r = CliRunner().invoke(cli, ["serve", "-c", str(trained_checkpoint), "--tiles", "2x2", "--tile-refine", "挡风版",
                                 "--device", "cpu"],
                           env={"BBUVL_API_KEYS": "k" * 32})
    assert r.exit_code != 0 and "--tile-refine" in r.output and "'挡风版'" in r.output
