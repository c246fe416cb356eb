"""A run launched as several processes that transformers would train one by one is refused before it writes."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.launch import free_port, launch_command



@pytest.mark.slow
def test_two_ranks_on_a_cpu_without_use_cpu_are_refused_before_either_writes(run_config, tmp_path):
    """`torchrun --nproc-per-node 2 -m bbuvl.cli train configs/base.yaml ... training.bf16=false` on a machine
    without a GPU (README, "Several GPUs", as written there): accelerate gave each process a run of its own, both
    trained on all the data, rank 0 swapped in final/ and rank 1's save of it failed ("runs/ddp/.final.saving/
    detection_head.safetensors: writing failed (No such file or directory)"), exit 1 with a torchrun traceback."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU machine trains the processes as one run")
    # Refused, the start leaves no folder it made (transformers' Trainer makes training.output_dir when it is built,
    # before the check): `runs/ddp` was left empty; and a folder that was there stays, empty as it was
    for out, made in ((tmp_path / "runs" / "ddp", tmp_path / "runs"), (tmp_path / "mine", None)):
        if made is None:
            out.mkdir()
        said = _refused(run_config, tmp_path, out)
        assert "training.use_cpu=true" in said and "writing failed" not in said, said
        if made is not None:
            assert not made.exists(), list(made.rglob("*"))
        else:
            assert out.is_dir() and not any(out.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "run.yaml"]


def _refused(run_config, tmp_path, out) -> str:
    """Launch two processes training into `out` and check both are refused; what they said, on one line."""
    from bbuvl.config import dump_config

    cfg = run_config("training.use_cpu=false", "training.max_steps=1", "data.val=null", f"training.output_dir={out}")
    config = tmp_path / "run.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(launch_command(2, free_port()) + ["train", str(config)], env=env, capture_output=True,
                          text=True, timeout=300)
    said = " ".join(done.stderr.split())
    assert done.returncode != 0, said
    assert said.count("error: launched as 2 processes (WORLD_SIZE 2), but transformers trains each one alone here "
                      "(device cpu, training.use_cpu false)") == 2, said
    return said
