"""bench/gpu.py on a machine without a GPU, as the docs' commands run it (docs/gpu.md): one line saying what to
do, before anything is built, instead of building a full-size model in float32 on the CPU."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.skipif(torch.cuda.is_available(), reason="what a machine without a GPU answers")
def test_the_docs_command_without_a_gpu_says_to_cut_the_layers(tmp_path, capsys):
    sys.path.insert(0, str(BENCH))
    try:
        gpu = importlib.import_module("gpu")
    finally:
        sys.path.remove(str(BENCH))
    out = tmp_path / "gpu-base.json"
    with pytest.raises(SystemExit) as stop:
        gpu.main(["--config", "configs/base.yaml", "--out", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert stop.value.code == 2 and "torch sees no GPU here" in err and "--layers 2 --device cpu" in err
    assert not out.exists()
    assert gpu.parse_args(["--config", "configs/base.yaml", "--layers", "2"]).device == "cpu"
