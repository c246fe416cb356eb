"""`bbuvl serve` takes every option of `bbuvl predict` that applies to serving, with the same meaning and checks:
it had no --hierarchy, --verdict-review, --verdict-fail, --score-threshold, --objectness-threshold, --max-new-tokens or
--constrained, so a server judged faults by the run config's hierarchy and thresholds alone, where predict on the same
checkpoint was told otherwise."""

from __future__ import annotations

import json
import shutil

import pytest
import typer
from typer.testing import CliRunner

from bbuvl.cli import app

# predict's options that have no meaning for a server: where photos come from and go, and teacher photos
PREDICT_ONLY = {"input", "out", "overwrite", "batch_size", "teachers"}


def _options(command: str) -> dict:
    return {p.name: p for p in typer.main.get_command(app).commands[command].params}


def test_serve_takes_every_option_of_predict_that_applies_to_serving_with_the_same_meaning():
    predict, serve = _options("predict"), _options("serve")
    missing = sorted(set(predict) - PREDICT_ONLY - set(serve))
    assert not missing, missing  # hierarchy, verdict_review, verdict_fail, ... before
    for name in set(predict) - PREDICT_ONLY - {"mode"}:  # a server runs no teachers mode, and its help says so
        assert (serve[name].opts, serve[name].secondary_opts, serve[name].help) == \
               (predict[name].opts, predict[name].secondary_opts, predict[name].help), name


@pytest.mark.parametrize("args", [["--score-threshold", "1.5"], ["--verdict-fail", "nan"], ["--max-new-tokens", "0"]])
def test_serve_refuses_a_bad_value_as_predict_does(tmp_path, args):
    said = []
    for command in (["predict", "-i", str(tmp_path), "-o", str(tmp_path / "p.jsonl")], ["serve"]):
        r = CliRunner().invoke(app, [*command, "-c", str(tmp_path / "run"), *args], env={"COLUMNS": "200"})
        assert r.exit_code == 2, r.output
        said.append([line for line in r.output.splitlines() if args[0] in line or "Invalid value" in line])
    assert said[0] == said[1] and said[0], said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_serve_refuses_a_hierarchy_that_is_not_there_before_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("BBUVL_API_KEYS", "k" * 32)
    r = CliRunner().invoke(app, ["serve", "-c", str(tmp_path / "no-run"), "--hierarchy", str(tmp_path / "h.json")],
                           env={"COLUMNS": "400"})
    assert r.exit_code == 2 and f"{tmp_path / 'h.json'}: no such file (--hierarchy)" in r.output, r.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_serve_judges_a_photo_by_the_options_given_as_predict_does(trained_checkpoint, photos, tmp_path):
    import yaml

    from bbuvl.data.labels import DEFAULT_HIERARCHY
    from tests.serve.conftest import cli_server

    # The run's own hierarchy left on the training machine: --hierarchy names the one here (serve refused to start)
    folder = shutil.copytree(trained_checkpoint, tmp_path / "final")
    config = yaml.safe_load((folder / "bbuvl.yaml").read_text(encoding="utf-8"))
    config["data"]["hierarchy"] = str(tmp_path / "gone" / "hierarchy.json")
    (folder / "bbuvl.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    hierarchy = shutil.copy(DEFAULT_HIERARCHY, tmp_path / "hierarchy.json")
    options = ["--mode", "head", "--hierarchy", str(hierarchy), "--verdict-review", "0.01", "--verdict-fail", "0.02",
               "--score-threshold", "0.05", "--device", "cpu"]
    (tmp_path / "in").mkdir()
    shutil.copy(photos[0], tmp_path / "in")
    r = CliRunner().invoke(app, ["predict", "-c", str(folder), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "p.jsonl"),
                                 *options], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.output
    (line,) = map(json.loads, (tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines())
    with cli_server(["-c", str(folder), *options], tmp_path / "serve.log") as (client, _):
        answer = client.detect_file(photos[0]).json()
    assert answer["verdict"] == line["verdict"]
    assert [o["bbox_2d"] for o in answer["objects"]] == [o["bbox_2d"] for o in line["objects"]]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_serve_refuses_a_tile_option_that_would_change_nothing_as_predict_does(trained_checkpoint, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import bbuvl
    from bbuvl.model.checkpoint import read_model_folder

    assert read_model_folder(trained_checkpoint).cfg.inference.tiles == "off"
    said = []
    (tmp_path / "in").mkdir()
    for command in (["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "p.jsonl")], ["serve", "--port", "0"]):
        # A subprocess: a server that took the option would listen until killed (it did, the option unused)
        env = {**os.environ, "BBUVL_API_KEYS": "k" * 32, "COLUMNS": "200",
               "PYTHONPATH": str(Path(bbuvl.__file__).parents[1])}
        r = subprocess.run([sys.executable, "-m", "bbuvl.cli", *command, "-c", str(trained_checkpoint), "--tiles-only",
                            "--device", "cpu"], capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 2, r.stdout + r.stderr
        said.append(" ".join((r.stdout + r.stderr).split()))
    assert said == ["error: --tiles-only applies only with --tiles: add --tiles or leave it out"] * 2, said
