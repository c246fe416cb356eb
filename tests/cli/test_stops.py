"""The line a command stopped by a signal ends with says what it keeps, true for that command (cli/stops.py). One line
for every command said "what it finished is kept ... run it again to go on": a stopped `choose-tiles` removed its
finished scales with --out and a re-run started again from the first."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import bbuvl
from bbuvl.cli.stops import GOES_ON, START_OVER

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


def test_only_predict_and_train_say_they_go_on():
    from bbuvl.cli.stops import stop_keeps

    assert stop_keeps(["predict", "-c", "ckpt", "-o", "p.jsonl"]) == GOES_ON["predict"]
    assert stop_keeps(["train", "--resume", "run.yaml"]) == GOES_ON["train"]
    for args in (["choose-tiles", "-c", "train"], ["data", "synth", "out"], ["eval", "--pred", "predict"], []):
        assert stop_keeps(args) == START_OVER, args
