"""`fewshot classify` and `fewshot label` killed half-way left their rows as `.NAME.PID.*.tmp.EXT` beside the output,
one more per kill, which the rerun kept: the rerun, holding the output, removes every stray of it, whatever pid its
name carries (a running one's: in a container every killed run was pid 1)."""

from __future__ import annotations

import json
import os
import subprocess

from PIL import Image

from tests.fewshot.test_hostile_input import invoke, photos


def _dead_pid() -> int:
    """The pid of a process that has ended (as a run killed by kill -9 has)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _strays(out, pid: int) -> tuple:
    """Killed writers' half-written temporaries of `out`: one named with `pid`, one with a pid that runs (this test's
    parent process's, as a run killed as pid 1 in a container names pid 1)."""
    dead = out.parent / f".{out.name}.{pid}.abcd1234.tmp{out.suffix}"
    running = out.parent / f".{out.name}.{os.getppid()}.abcd1234.tmp{out.suffix}"
    for stray in (dead, running):
        stray.write_text("half of a killed run's rows\n", encoding="utf-8")
    return dead, running


def test_a_rerun_removes_what_a_killed_classify_or_label_left_beside_its_output(tmp_path):
    support = photos(tmp_path / "support", {"线缆": 2, "标签贴纸": 2})
    out = tmp_path / "res" / "r.csv"
    out.parent.mkdir()
    dead, running = _strays(out, _dead_pid())
    code, said = invoke("classify", "--support", support, "--query", support, "--backbone", "pixels:8", "--no-cache",
                        "--out", out)
    assert code == 0 and out.is_file(), said
    assert not dead.exists() and not running.exists()

    Image.new("RGB", (40, 30), (200, 40, 40)).save(tmp_path / "a.jpg")
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"image": str(tmp_path / "a.jpg"), "width": 40, "height": 30, "error": None, "objects": [
        {"bbox_2d": [2, 2, 30, 20], "label": "线缆", "score": 0.9}]}) + "\n", encoding="utf-8")
    labelled = tmp_path / "res" / "labelled.jsonl"
    dead, running = _strays(labelled, _dead_pid())
    code, said = invoke("label", "--predictions", preds, "--support", support, "--backbone", "pixels:8", "--no-cache",
                        "--threshold", "-1", "--out", labelled)
    assert code == 0 and labelled.is_file(), said
    assert not dead.exists() and not running.exists()
