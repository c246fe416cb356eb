"""Reading what another command is still writing: a predictions file `bbuvl predict` is appending to is refused by
every reader, naming the writer; one a killed predict left unfinished is read, with a note that says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.schema import read_records, resolve_image
from tests.eval.conftest import EvalFiles

runner = CliRunner()

# A real `run_predictions` (infer/batch.py) in its own process: it locks its output, writes the manifest and appends a
# line per photo of the ground truth, `delay` seconds apart, as `bbuvl predict` does.
PREDICT = """
import sys, time
from pathlib import Path
from bbuvl.infer.batch import PredictJob, run_predictions
gt = Path({gt!r})
names = {names!r}
def predict(paths):
    time.sleep({delay})
    return [{{"image": p, "objects": [], "raw": "[]", "error": None}} for p in paths]
run_predictions(PredictJob(names, Path({out!r}), "head", 1, source=str(gt), checkpoint="/ckpt", root=gt.parent), predict)
"""


def start_predict(gt: Path, out: Path, delay: float) -> subprocess.Popen:
    names = [r.image for r in read_records(gt)]
    code = PREDICT.format(gt=str(gt), names=names, out=str(out), delay=delay)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_lines(out: Path, child: subprocess.Popen, n: int) -> None:
    import time

    end = time.monotonic() + 60
    while not (out.is_file() and out.read_text(encoding="utf-8").count("\n") >= n):
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else "the predict run ended"
        assert time.monotonic() < end, "the predict run wrote nothing"
        time.sleep(0.02)


def support_folder(gt: Path, root: Path) -> Path:
    """Two classes of one ground-truth photo each: enough for `fewshot classify` to get as far as its inputs."""
    for i, record in enumerate(read_records(gt)[:2]):
        (root / f"class{i}").mkdir(parents=True)
        (root / f"class{i}" / "a.jpg").write_bytes(resolve_image(gt, record.image).read_bytes())
    return root


@pytest.fixture
def running(eval_files: EvalFiles, tmp_path: Path):
    """A predictions file a predict run is still writing (a line of six there), and that run."""
    out = tmp_path / "pred.jsonl"
    child = start_predict(eval_files.gt, out, delay=3.0)
    try:
        wait_for_lines(out, child, 1)
        yield out, child
    finally:
        child.kill()
        child.wait()


def readers(eval_files: EvalFiles, pred: Path, tmp_path: Path) -> dict[str, list[str]]:
    support = support_folder(eval_files.gt, tmp_path / "support")
    return {
        "eval": ["eval", "--pred", str(pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "m" / "metrics.json"),
                 "--report", str(tmp_path / "report")],
        "viz": ["viz", str(pred), str(tmp_path / "pictures")],
        "viz --pred": ["viz", str(eval_files.gt), str(tmp_path / "pictures"), "--pred", str(pred)],
        "fewshot classify": ["fewshot", "classify", "--support", str(support), "--query", str(pred), "--backbone",
                             "pixels:8", "--out", str(tmp_path / "classes.csv"), "--no-cache"],
        "fewshot label": ["fewshot", "label", "--predictions", str(pred), "--support", str(support), "--backbone",
                          "pixels:8", "--out", str(tmp_path / "labelled" / "data.jsonl"), "--no-cache"],
    }


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_every_reader_refuses_a_predictions_file_predict_is_still_writing_naming_it_and_writes_nothing(
        eval_files, tmp_path, running):
    pred, child = running
    for name, args in readers(eval_files, pred, tmp_path / "work").items():
        before = sorted(p.name for p in (tmp_path / "work").rglob("*"))
        result = runner.invoke(app, args)
        said = " ".join(result.output.split())
        assert result.exit_code == 2, (name, result.output)
        assert f"bbuvl predict` (pid {child.pid}) is still writing it" in said and "wait for that command to finish" in said, \
            (name, said)
        assert "Traceback" not in result.output
        # nothing written: neither the outputs nor anything beside them (the support folder was there before)
        assert sorted(p.name for p in (tmp_path / "work").rglob("*")) == before, name
    assert child.poll() is None  # the refusals took no lock from the writer


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_predictions_file_a_killed_predict_left_is_scored_with_a_note_that_it_is_unfinished(eval_files, tmp_path):
    pred = tmp_path / "pred.jsonl"
    child = start_predict(eval_files.gt, pred, delay=1.0)
    try:
        wait_for_lines(pred, child, 2)
    finally:
        os.kill(child.pid, signal.SIGKILL)  # as a closed laptop or an out-of-memory kill stops it
        child.wait()
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "m.json")])
    said = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert f"is unfinished: `bbuvl predict` (pid {child.pid}) was stopped before it predicted every photo" in said
    assert "run the same `bbuvl predict` command again" in said
    assert json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))["errors"]["images_without_prediction"] >= 1

    viz = runner.invoke(app, ["viz", str(pred), str(tmp_path / "pictures")])
    assert viz.exit_code == 0, viz.output
    assert "is unfinished" in " ".join(viz.output.split())


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_finished_predictions_file_gets_no_note(eval_files, tmp_path):
    pred = tmp_path / "pred.jsonl"
    child = start_predict(eval_files.gt, pred, delay=0.0)
    assert child.wait(timeout=120) == 0, child.stderr.read().decode() if child.stderr else ""
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(eval_files.gt), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert "unfinished" not in result.output and "still writing" not in result.output
