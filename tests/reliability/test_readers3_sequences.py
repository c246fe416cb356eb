"""A command that reads a checkpoint or a dataset for as long as it runs (`bbuvl serve`, `bbuvl train`) keeps it: a
writer that would replace or delete it (`train --overwrite`, `data synth --overwrite`) is refused naming the reader,
and goes on once the reader is killed (kill -9). Before, `serve -c run/final` answered with weights that `train
--overwrite` had deleted, with no word from either. The readers here are the real commands, in their own processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bbuvl
from bbuvl.cli import app
from bbuvl.outputs import READERS_ENV
from tests.serve.conftest import cli_server


@pytest.fixture(autouse=True)
def registry(tmp_path, monkeypatch) -> Path:
    """Readers register in a folder of this test's, inherited by the commands it starts."""
    folder = tmp_path / "readers"
    monkeypatch.setenv(READERS_ENV, str(folder))
    return folder


def _said(result) -> str:
    return " ".join(result.output.split())


def _wait_for_reader(registry: Path, path: Path, proc: subprocess.Popen, log: Path) -> None:
    """Until `proc` has registered as a reader of `path` (it does so before it loads anything)."""
    deadline = time.monotonic() + 90
    while not any(str(path) in entry.read_text() for entry in registry.glob("reader-*.json")):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_train_overwrite_of_the_run_a_server_serves_is_refused_naming_the_server_and_goes_on_once_it_is_killed(
        trained_checkpoint, tmp_path, registry, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained_checkpoint.parent, run)
    config = tmp_path / "run config.yaml"
    shutil.copy(trained_checkpoint / "bbuvl.yaml", config)
    weights = {p.name: p.read_bytes() for p in (run / "final").glob("*.safetensors")}
    # served by a path relative to the server's own folder (the repository), replaced by its absolute name
    served = os.path.relpath(run / "final", Path(bbuvl.__file__).parents[2])
    with cli_server(["-c", served, "--device", "cpu"], tmp_path / "serve.log") as (client, server):
        args = ["train", str(config), f"training.output_dir={run}", "training.max_steps=1", "--overwrite"]
        result = CliRunner().invoke(app, args)
        said = _said(result)
        assert result.exit_code == 2, result.output
        assert f"{run} (training.output_dir): `bbuvl serve` (pid {server.pid}, since " in said, said
        assert f"reading {run / 'final'} inside it" in said and "stop that command first, or write elsewhere" in said
        assert {p.name: p.read_bytes() for p in (run / "final").glob("*.safetensors")} == weights
        assert client.request("GET", "/readyz").status == 200  # still serving
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert list(registry.glob("reader-*.json")) == []  # the killed server's entry went with the first look after it


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_data_synth_overwrite_of_the_dataset_a_training_run_reads_is_refused_naming_it_and_goes_on_once_it_is_killed(
        trained_checkpoint, small_dataset, tmp_path, registry):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    config = tmp_path / "run config.yaml"
    shutil.copy(trained_checkpoint / "bbuvl.yaml", config)
    src = str(Path(bbuvl.__file__).parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    log = tmp_path / "train.log"
    with log.open("w") as out:
        trainer = subprocess.Popen(
            [sys.executable, "-m", "bbuvl.cli", "train", str(config), f"training.output_dir={tmp_path / 'run'}",
             f"data.train={data / 'train.jsonl'}", f"data.val={data / 'val.jsonl'}", "data.teachers=null",
             "training.max_steps=100000"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_reader(registry, data / "train.jsonl", trainer, log)
        synth = ["data", "synth", str(data), "--n-train", "2", "--n-val", "1", "--size", "160x120", "--teachers", "0",
                 "--overwrite"]
        before = (data / "train.jsonl").read_bytes()
        result = CliRunner().invoke(app, synth)
        said = _said(result)
        assert result.exit_code == 2, result.output
        assert f"`bbuvl train` (pid {trainer.pid}, since " in said and "stop that command first" in said, said
        assert (data / "train.jsonl").read_bytes() == before
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait(10)
    result = CliRunner().invoke(app, synth)
    assert result.exit_code == 0, result.output
    assert (data / "train.jsonl").read_bytes() != before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_overwrite_of_the_predictions_another_process_reads_is_refused_and_goes_on_once_it_is_killed(
        trained_checkpoint, small_dataset, tmp_path):
    from tests.test_outputs_readers import _reader

    out = tmp_path / "preds.jsonl"
    args = ["predict", "-c", str(trained_checkpoint), "-i", str(small_dataset / "val.jsonl"), "-o", str(out), "--mode",
            "head", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    first = out.read_bytes()
    reader = _reader(out)  # an `eval --pred preds.jsonl` of a long report, in another process
    try:
        result = CliRunner().invoke(app, [*args, "--overwrite"])
        said = _said(result)
        assert result.exit_code == 2, result.output
        assert f"{out} (--out): `bbuvl serve` (pid {reader.pid}, since " in said and "reading it" in said, said
        assert out.read_bytes() == first
    finally:
        os.kill(reader.pid, signal.SIGKILL)
        reader.wait()
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_model_tiny_overwrite_of_a_model_folder_being_read_is_refused_and_goes_on_once_the_reader_is_killed(tmp_path):
    from tests.test_outputs_readers import _reader

    out = tmp_path / "tiny"
    args = ["model", "tiny", str(out), "--hidden", "32", "--layers", "1", "--vision-depth", "1"]
    assert CliRunner().invoke(app, args).exit_code == 0
    files = sorted(p.name for p in out.iterdir())
    reader = _reader(out)
    try:
        result = CliRunner().invoke(app, [*args, "--overwrite"])
        assert result.exit_code == 2 and f"pid {reader.pid}" in _said(result), result.output
        assert sorted(p.name for p in out.iterdir()) == files
    finally:
        os.kill(reader.pid, signal.SIGKILL)
        reader.wait()
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
