"""bench/gpu.py and bench/gpu_session.sh on a machine without a GPU, as the docs' commands run them (docs/gpu.md): one
line saying what to do, before anything is built, instead of building a full-size model in float32 on the CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.bench_runner import bench_module

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.skipif(torch.cuda.is_available(), reason="what a machine without a GPU answers")
def test_the_docs_command_without_a_gpu_says_to_cut_the_layers(tmp_path, capsys):
    gpu = bench_module(BENCH, "gpu")
    out = tmp_path / "gpu-base.json"
    with pytest.raises(SystemExit) as stop:
        gpu.main(["--config", "configs/base.yaml", "--out", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert stop.value.code == 2 and "torch sees no GPU here" in err and "--layers 2 --device cpu" in err
    assert not out.exists()
    assert gpu.parse_args(["--config", "configs/base.yaml", "--layers", "2"]).device == "cpu"


@pytest.mark.parametrize("args", [["OUT", "gpu"], ["gpu"]])
def test_the_gpu_session_without_nvidia_smi_stops_at_once_saying_no_gpu_was_found(tmp_path, args):
    # the PATH here, less every folder holding an nvidia-smi: the script's first command must need nothing else
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if d and not (Path(d) / "nvidia-smi").exists())
    start = time.monotonic()
    got = subprocess.run([shutil.which("bash"), str(BENCH / "gpu_session.sh"), *args], cwd=tmp_path,
                         env={**os.environ, "PATH": path}, capture_output=True, text=True, timeout=30)
    took = time.monotonic() - start
    # before: it went on to install, import and run every row, each stopping with gpu.py's message
    assert got.returncode == 1, got.stdout + got.stderr
    assert got.stdout == "" and got.stderr.count("\n") == 1 and "no GPU found" in got.stderr, got.stderr
    assert took < 3 and not any(tmp_path.iterdir())  # no output folder made
