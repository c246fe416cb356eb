"""Class: two processes never share an output; every command that writes locks what it writes (bbuvl/outputs.py).

The commands come from the CLI itself, through the table of tests/reliability/test_no_command_writes_onto_its_inputs.py,
so a new command fails there until it says how it writes, and is then checked here too. For each one the test holds
the lock of the command's output as a second writer would (its own open file: flock tells the two apart even in one
process), runs the command once, and checks that it is refused, naming the holder's pid, before writing anything.
Two real processes are raced for the two cases that were found: two `data synth` into one folder, two `eval`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from tests.reliability.faults import held_elsewhere, wait_for
from tests.reliability.test_no_command_writes_onto_its_inputs import (COMMANDS, WRITES_NOTHING, built, snapshot,  # noqa: F401
                                                                       w, world_cases)

PID = 4242


@pytest.mark.parametrize("name", [c for c in COMMANDS if c not in WRITES_NOTHING])
def test_a_command_whose_output_another_process_is_writing_is_refused_and_writes_nothing(w, name):
    case = world_cases(w)[name]
    target = case.out
    before = snapshot(target) if target.exists() else None
    with held_elsewhere(target, "other command", pid=PID):
        r = CliRunner().invoke(app, case.argv(target) + ["--overwrite"])
        assert r.exit_code == 2, r.output
        text = " ".join(r.output.split())
        assert f"(pid {PID}) is writing it" in text and "Traceback" not in r.output, r.output
    assert (snapshot(target) if target.exists() else None) == before
    if before is None:
        assert not target.exists()  # a refused command leaves no folder behind


def test_once_the_other_writer_is_gone_the_command_runs(w):
    out = w / "stats.json"
    with held_elsewhere(out, "data stats", pid=PID):
        assert CliRunner().invoke(app, ["data", "stats", str(w / "ds" / "train.jsonl"), "--json", str(out)]).exit_code == 2
    r = CliRunner().invoke(app, ["data", "stats", str(w / "ds" / "train.jsonl"), "--json", str(out)])
    assert r.exit_code == 0 and out.is_file(), r.output
    assert sorted(p.name for p in w.iterdir() if p.name.endswith(".lock")) == []  # no lock file stays


SYNTH = [sys.executable, "-m", "bbuvl.cli", "data", "synth"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_two_synth_runs_into_one_folder_one_is_refused_and_the_dataset_is_the_others(tmp_path):
    out = tmp_path / "ds"
    runs = {n: subprocess.Popen([*SYNTH, str(out), "--n-train", str(n), "--n-val", "2", "--size", "320x240", "--seed",
                                 str(n), "--overwrite"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for n in (30, 31)}  # started together: whichever claims the folder first writes it, the other is refused
    outputs = {n: p.communicate(timeout=300)[0] for n, p in runs.items()}
    codes = {n: p.returncode for n, p in runs.items()}
    assert sorted(codes.values()) == [0, 2], outputs
    won = next(n for n, code in codes.items() if code == 0)
    lost = next(n for n in codes if n != won)
    assert f"(pid {runs[won].pid}) is writing it" in " ".join(outputs[lost].split()), outputs[lost]
    check = CliRunner().invoke(app, ["data", "check", str(out / "train.jsonl")])
    assert check.exit_code == 0, check.output
    assert len((out / "train.jsonl").read_text(encoding="utf-8").splitlines()) == won  # one run's, whole
    assert len(list((out / "images").glob("*.jpg"))) == won + 2


def test_an_eval_is_refused_while_another_writes_its_report_folder(w):
    report = w / "report"
    argv = ["eval", "--pred", str(w / "pred.jsonl"), "--gt", str(w / "ds" / "val.jsonl")]
    with held_elsewhere(report, "eval", pid=PID):
        r = CliRunner().invoke(app, [*argv, "--out", str(w / "other.json"), "--report", str(report)])
    assert r.exit_code == 2 and f"(pid {PID}) is writing it" in " ".join(r.output.split()), r.output
    assert not (w / "other.json").exists() and not report.exists()
