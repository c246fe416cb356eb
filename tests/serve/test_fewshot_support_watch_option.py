"""`bbuvl serve --fewshot-watch SECONDS`: how often the support folder is looked at; a negative period or one given
without --fewshot is a usage error."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.serve.auth import ENV_VAR
from tests.serve.test_fewshot_support_changes import answer, crops  # noqa: F401 (a fixture)


def test_fewshot_watch_is_refused_negative_or_without_fewshot(trained_checkpoint, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "k" * 32)
    r = CliRunner().invoke(app, ["serve", "-c", str(trained_checkpoint), "--fewshot-watch", "-1"])
    assert r.exit_code == 2 and "--fewshot-watch" in r.output
    r = CliRunner().invoke(app, ["serve", "-c", str(trained_checkpoint), "--fewshot-watch", "5"])
    assert r.exit_code == 2 and "--fewshot-watch applies only with --fewshot" in " ".join(r.output.split()), r.output


@pytest.mark.slow  # its own process loads the checkpoint
def test_fewshot_watch_0_serves_the_support_read_at_start(trained_checkpoint, crops, photos, tmp_path):  # noqa: F811
    import time

    from tests.serve.conftest import cli_server

    root, classes = crops
    folder = tmp_path / "support"
    shutil.copytree(root / classes[0], folder / classes[0])
    args = ["-c", str(trained_checkpoint), "--mode", "head", "--device", "cpu", "--fewshot", str(folder),
            "--fewshot-backbone", "pixels:8", "--fewshot-watch", "0"]
    with cli_server(args, tmp_path / "serve.log") as (client, _):
        shutil.copytree(root / classes[2], folder / classes[2])
        time.sleep(3)  # past the default period of 2 s
        got = answer(client, photos[0])
    assert got["info"]["classes"] == [classes[0]] and got["info"]["version"] == 1
