"""`bbuvl eval --report` stopped while it draws (Ctrl-C; seconds to minutes on large photos) must leave the previous
report whole: the new run wrote its precision-recall curves first, and a stop while drawing left them beside the
previous run's page and pictures, one report of two runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.synthetic.dataset import synthesize
from tests.eval.conftest import write_perturbed_predictions


def report_files(report: Path) -> dict[str, bytes]:
    """Every file of a report (hidden temporaries left out) with its bytes."""
    return {p.relative_to(report).as_posix(): p.read_bytes() for p in sorted(report.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(report).parts)}


def eval_command(root: Path, pred: Path) -> list[str]:
    return [sys.executable, "-m", "bbuvl.cli", "eval", "--pred", str(pred), "--gt", str(root / "data" / "val.jsonl"),
            "--out", str(root / "m.json"), "--report", str(root / "report"), "--worst", "20"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_report_stopped_while_drawing_is_the_previous_one_whole(tmp_path):
    synthesize(tmp_path / "data", 1, 20, seed=2, size=(640, 480), num_teachers=1)
    gt = tmp_path / "data" / "val.jsonl"
    first, second = (write_perturbed_predictions(gt, tmp_path / f"{n}.jsonl", seed=s) for n, s in (("a", 0), ("b", 1)))
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    # The previous report only has to exist: written in this process, where a process of its own spent ~5 s of its
    # ~12 s importing torch and the CLI on the 2-core CI. The stopped run below stays a process of its own (Ctrl-C).
    done = CliRunner().invoke(app, eval_command(tmp_path, first)[3:], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    before = report_files(tmp_path / "report")
    assert "pr_curve.png" in before and "index.html" in before

    # Ctrl-C as at a terminal: a suite started in the background (`make test &`) ignores SIGINT, and a child that
    # inherits that never sees the signal, so it finished the report and the test failed on its own set-up.
    stopped = subprocess.Popen(eval_command(tmp_path, second) + ["--overwrite"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    drawing = None
    while drawing is None and stopped.poll() is None:  # the pictures' folders filling beside their names
        drawing = next((p for p in (tmp_path / "report").glob(".worst.*.tmp") if any(p.iterdir())), None)
        time.sleep(0.005)
    assert drawing is not None, "the run ended before it drew: nothing was stopped"
    stopped.send_signal(signal.SIGINT)
    assert stopped.wait(timeout=60) != 0
    assert report_files(tmp_path / "report") == before
