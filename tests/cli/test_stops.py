"""The line a command stopped by a signal ends with says what it keeps, true for that command and for how far it got
(cli/stops.py), and a re-run as it says is accepted. One line for every command said "what it finished is kept ... run
it again to go on": a stopped `choose-tiles` removed its finished scales with --out and a re-run started again from the
first. Then a `train` stopped before its first whole checkpoint was told to go on with --resume, which found nothing to
continue, and a `predict --overwrite` stopped before it started --out over was told to run again without --overwrite,
which refused --out as another run's."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import bbuvl
from bbuvl.cli.stops import START_OVER

CHILD = "import sys, bbuvl.entry; sys.argv = ['bbuvl', *sys.argv[1:]]; bbuvl.entry.main()"


def _stopped_after(args: list[str], lines: int, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
    """Run `bbuvl ARGS`, send it `signum` once its stdout has shown `lines` lines starting 'scale '; its status,
    stdout and stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300",
           "PYTHONPATH": os.pathsep.join(p for p in (str(Path(bbuvl.__file__).parents[1]),
                                                     os.environ.get("PYTHONPATH")) if p)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    shown = []
    try:
        for line in child.stdout:
            shown.append(line)
            if sum(s.startswith("scale ") for s in shown) == lines:
                child.send_signal(signum)
                break
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, "".join(shown) + out, err


@pytest.mark.parametrize("tiny_family", ["qwen2_5_vl"], indirect=True)  # the stop does not depend on the family
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_choose_tiles_stopped_after_a_scale_says_it_starts_over_as_it_does(trained_checkpoint, small_dataset,
                                                                          tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    gt = tmp_path / "val.jsonl"
    records = [json.loads(line) for line in (small_dataset / "val.jsonl").open(encoding="utf-8")]
    for r in records:
        r["images"] = [str(small_dataset / r["images"][0])]
    gt.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "cands"
    # Many candidates, the later ones cut into many tiles: the run is still going when the first is scored.
    status, shown, err = _stopped_after(["choose-tiles", "-c", str(ckpt), "--gt", str(gt), "-o", str(out),
                                         "--factors", "1,4,6,8,8,8", "--no-refine", "--device", "cpu"], lines=1)
    assert status == 143, (shown, err)
    assert err == f"bbuvl: terminated (SIGTERM): the command stopped; {START_OVER}\n", err
    assert not out.exists()  # the scale it had scored went with --out: a re-run starts from the first
    assert not (ckpt / "tile_scale.json").exists()


def test_a_command_that_says_nothing_starts_over_whatever_the_one_before_it_said(tmp_path):
    from typer.testing import CliRunner

    from bbuvl.cli import app
    from bbuvl.cli.stops import keeps_now, stop_keeps

    keeps_now("the predictions it wrote are kept")  # a predict run before, in this process (a test, a notebook)
    result = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "d"), "--scene", "shapes", "--n-train", "1",
                                      "--n-val", "1", "--size", "96x96"])
    assert result.exit_code == 0, result.output
    assert stop_keeps() == START_OVER


# A stop as the signal handler raises it (bbuvl/entry.py), landing in a library call the command makes at a known point.
def _stop_in(monkeypatch, owner: object, name: str, when=lambda *a, **k: True) -> None:
    """`owner.name` raises SIGTERM's Terminated where `when(*args)` holds, and runs as it does otherwise."""
    from bbuvl.entry import Terminated

    real = getattr(owner, name)
    bound = isinstance(owner, type) and isinstance(owner.__dict__.get(name), classmethod)

    def stopped(*args, **kwargs):
        if when(*args, **kwargs):
            raise Terminated(signal.SIGTERM)
        return real(*args[1:], **kwargs) if bound else real(*args, **kwargs)

    monkeypatch.setattr(owner, name, classmethod(stopped) if bound else stopped)


def _bbuvl(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run `bbuvl ARGS` as the console script does (bbuvl/entry.py, in this process); its status and its last line on
    stderr."""
    import bbuvl.entry

    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(sys, "argv", ["bbuvl", *args])
        try:
            with pytest.raises(SystemExit) as ended:
                bbuvl.entry.main()
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)
    err = capsys.readouterr().err.strip().splitlines()
    return ended.value.code or 0, err[-1] if err else ""


def _advice(line: str) -> list[str]:
    """The flag the stop line says to run the command again with (none, --resume or --overwrite)."""
    then = line.rpartition("run it again")[2]
    return [flag for flag in ("--resume", "--overwrite") if then.startswith(f" with {flag}")]


@pytest.mark.parametrize("tiny_family", ["qwen2_5_vl"], indirect=True)  # the stop does not depend on the family
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_overwrite_stopped_before_it_started_out_over_says_to_run_it_again_with_overwrite(
        trained_checkpoint, small_dataset, tmp_path, monkeypatch, capsys):
    from transformers import GenerationMixin, PreTrainedModel

    pred = tmp_path / "pred.jsonl"
    base = ["predict", "-c", str(trained_checkpoint), "-i", str(small_dataset / "val.jsonl"), "-o", str(pred),
            "--device", "cpu", "--batch-size", "1"]
    assert _bbuvl([*base, "--mode", "head"], monkeypatch, capsys)[0] == 0
    before = pred.read_bytes()
    with monkeypatch.context() as m:
        _stop_in(m, PreTrainedModel, "from_pretrained")  # while the model loads: --out is not yet started over
        status, line = _bbuvl([*base, "--mode", "generate", "--overwrite"], monkeypatch, capsys)
    assert status == 143 and pred.read_bytes() == before, line
    # Before: "run it again, without --overwrite, to go on from there", refused: --out holds another run's lines
    assert line.endswith("--out is as it was, not yet started over; run it again with --overwrite to start it over")
    assert _advice(line) == ["--overwrite"]
    # Stopped again once it has started --out over and written a line: now it goes on without --overwrite
    calls = []
    with monkeypatch.context() as m:
        _stop_in(m, GenerationMixin, "generate", when=lambda *a, **k: calls.append(1) or len(calls) > 1)
        status, line = _bbuvl([*base, "--mode", "generate", "--overwrite"], monkeypatch, capsys)
    assert status == 143 and len(pred.read_text().splitlines()) == 1, line
    assert line.endswith("the predictions it wrote are kept; run it again, without --overwrite, to go on from there")
    assert _advice(line) == []
    assert _bbuvl([*base, "--mode", "generate"], monkeypatch, capsys)[0] == 0
    assert len(pred.read_text().splitlines()) == 2


def _train_config(run_config, path: Path, *overrides: str) -> Path:
    """A config file of a fast run (`run_config`) with `overrides`."""
    from bbuvl.config import dump_config

    path.write_text(dump_config(run_config("data.val=null", "training.save_steps=1", *overrides)), encoding="utf-8")
    return path


def _saving_into(folder: str):
    """Whether a torch.save (args) writes into a folder named `folder`: the stop lands in that checkpoint's save."""
    return lambda obj, path, *a, **k: Path(path).parent.name == folder


@pytest.mark.parametrize("tiny_family", ["qwen2_5_vl"], indirect=True)
@pytest.mark.parametrize("stopped_in, then", [("checkpoint-1", "--overwrite"), ("checkpoint-2", "--resume")])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_train_stopped_says_how_to_go_on_as_far_as_it_got_and_that_is_accepted(
        run_config, tmp_path, monkeypatch, capsys, stopped_in, then):
    import torch

    config = _train_config(run_config, tmp_path / "run.yaml", "training.max_steps=3",
                           f"training.output_dir={tmp_path / 'run'}")
    with monkeypatch.context() as m:
        _stop_in(m, torch, "save", when=_saving_into(stopped_in))
        status, line = _bbuvl(["train", str(config)], monkeypatch, capsys)
    assert status == 143, line
    # Before: "run it again with --resume" in both; stopped in its first save, --resume found nothing to continue
    assert _advice(line) == [then], line
    assert _bbuvl(["train", str(config), then], monkeypatch, capsys)[0] == 0


@pytest.mark.parametrize("tiny_family", ["qwen2_5_vl"], indirect=True)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_train_overwrite_stopped_before_it_removed_the_run_there_says_to_overwrite_not_to_resume_it(
        run_config, tmp_path, monkeypatch, capsys):
    from transformers import PreTrainedModel

    run = tmp_path / "run"
    old = _train_config(run_config, tmp_path / "old.yaml", "training.max_steps=2", f"training.output_dir={run}")
    assert _bbuvl(["train", str(old)], monkeypatch, capsys)[0] == 0
    new = _train_config(run_config, tmp_path / "new.yaml", "training.max_steps=1", f"training.output_dir={run}",
                        "training.lr.llm=2e-3")
    with monkeypatch.context() as m:
        _stop_in(m, PreTrainedModel, "from_pretrained")  # the model loads before --overwrite clears the folder
        status, line = _bbuvl(["train", str(new), "--overwrite"], monkeypatch, capsys)
    assert status == 143 and (run / "checkpoint-2").is_dir(), line
    # --resume would go on with the old run, whose checkpoints are whole
    assert line.endswith(f"it saved no checkpoint whole, so the run starts over: run it again with --overwrite (it "
                         f"removes checkpoint-1, checkpoint-2, final, tb ... from {run})"), line
    assert _bbuvl(["train", str(new), "--overwrite"], monkeypatch, capsys)[0] == 0
    assert not (run / "checkpoint-2").exists()


@pytest.mark.parametrize("tiny_family", ["qwen2_5_vl"], indirect=True)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_train_resumed_from_another_folder_stopped_before_its_first_save_there_names_what_to_remove(
        run_config, tmp_path, monkeypatch, capsys):
    import torch

    first = _train_config(run_config, tmp_path / "a.yaml", "training.max_steps=1", f"training.output_dir={tmp_path / 'a'}")
    assert _bbuvl(["train", str(first)], monkeypatch, capsys)[0] == 0
    run = tmp_path / "b"
    config = _train_config(run_config, tmp_path / "b.yaml", "training.max_steps=3", f"training.output_dir={run}")
    resumed = ["train", str(config), "--resume-from", str(tmp_path / "a" / "checkpoint-1")]
    with monkeypatch.context() as m:
        _stop_in(m, torch, "save", when=_saving_into("checkpoint-2"))
        status, line = _bbuvl(resumed, monkeypatch, capsys)
    assert status == 143, line
    # Before: "run it again with --resume", which found no checkpoint in b; the same command is refused while b holds
    # the run's record, which --overwrite (not allowed with --resume-from) would remove
    said = re.search(rf"it saved no checkpoint whole in {re.escape(str(run))}, where a re-run refuses what it wrote "
                     rf"\((.+)\) as another run's: remove that, then run it again to go on from "
                     rf"{re.escape(resumed[-1])}$", line)
    assert said, line
    for name in said.group(1).split(", "):
        shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    assert _bbuvl(resumed, monkeypatch, capsys)[0] == 0
