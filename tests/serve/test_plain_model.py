"""`bbuvl serve` on a plain model folder (never trained here): the folders, options and answers of `bbuvl predict`."""

from __future__ import annotations

import base64
import json

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app as cli
from bbuvl.data.layout import read_vocabulary
from tests.serve.conftest import cli_server


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_serve_answers_from_a_plain_model_folder_with_labels_exactly_as_predict_does(tiny_model_dir, small_dataset, photos,
                                                                                      tmp_path):
    labels = small_dataset / "labels.json"
    photo = photos[-1]
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / photo.name).write_bytes(photo.read_bytes())
    out = tmp_path / "pred.jsonl"
    r = CliRunner().invoke(cli, ["predict", "-c", str(tiny_model_dir), "-i", str(folder), "-o", str(out), "--labels",
                                 str(labels), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    expected = json.loads(out.read_text(encoding="utf-8").splitlines()[0])

    log = tmp_path / "serve.log"
    with cli_server(["-c", str(tiny_model_dir), "--labels", str(labels), "--device", "cpu"], log) as (client, _):
        detect = client.detect_file(photo)
        url = "data:image/png;base64," + base64.b64encode(photo.read_bytes()).decode()
        chat = client.request("POST", "/v1/chat/completions", json.dumps({"model": "bbuvl", "messages": [{"role": "user",
                              "content": [{"type": "image_url", "image_url": {"url": url}}]}]}).encode(),
                              {"Content-Type": "application/json"})
    assert "bbuvl.yaml missing" not in log.read_text()
    assert detect.status == 200, detect.body
    got = detect.json()
    assert got["model"]["mode"] == "generate" and got["model"]["labels"] == len(read_vocabulary(labels))
    assert (got["width"], got["height"]) == (expected["width"], expected["height"])
    assert [{k: o[k] for k in ("bbox_2d", "label", "score")} for o in got["objects"]] == expected["objects"]
    assert chat.status == 200, chat.body
    assert chat.json()["bbuvl"]["raw"] == expected["raw"]


@pytest.mark.parametrize("extra, says", [
    ([], "--labels labels.json"),
    (["--labels", "{labels}", "--mode", "head"], "generate mode only"),
])
def test_serve_refuses_a_plain_model_folder_whose_options_do_not_fit_before_loading(tiny_model_dir, small_dataset, extra,
                                                                                     says):
    args = ["serve", "-c", str(tiny_model_dir), "--port", "0"] + [a.format(labels=small_dataset / "labels.json") for a in extra]
    r = CliRunner().invoke(cli, args, env={"BBUVL_API_KEYS": "k" * 32})
    assert r.exit_code == 2 and says in r.output.replace("\n", " "), r.output
    assert "Traceback" not in r.output and "bbuvl.yaml missing" not in r.output


@pytest.mark.parametrize("command", ["serve", "predict"])
def test_labels_on_a_trained_checkpoint_is_refused_as_it_answers_with_its_own(trained_checkpoint, small_dataset, photos,
                                                                              tmp_path, command):
    args = [command, "-c", str(trained_checkpoint), "--labels", str(small_dataset / "labels.json")]
    args += ["--port", "0"] if command == "serve" else ["-i", str(photos[0]), "-o", str(tmp_path / "p.jsonl")]
    r = CliRunner().invoke(cli, args, env={"BBUVL_API_KEYS": "k" * 32})
    assert r.exit_code == 2 and "--labels is for a plain model folder" in r.output.replace("\n", " "), r.output
    assert not (tmp_path / "p.jsonl").exists()
