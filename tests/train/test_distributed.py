"""Two-process data-parallel training on CPU (gloo) matches one process with the doubled batch."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _history(out_dir):
    return [h for h in json.loads((out_dir / "history.json").read_text()) if "loss" in h and "train_runtime" not in h]


def test_two_process_ddp_matches_one_process_with_doubled_batch(run_config, tmp_path):
    common = ("training.max_steps=3", "data.teacher_ratio=0", "detection.enabled=false", "data.val=null")
    one = run_config(*common, "training.per_device_batch_size=2", f"training.output_dir={tmp_path / 'one'}")
    two = run_config(*common, "training.per_device_batch_size=1", f"training.output_dir={tmp_path / 'two'}")
    cfg_files = {}
    for name, cfg in (("one", one), ("two", two)):
        from bbuvl.config import dump_config

        p = tmp_path / f"{name}.yaml"
        p.write_text(dump_config(cfg), encoding="utf-8")
        cfg_files[name] = p
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    cli = [sys.executable, "-m", "bbuvl.cli", "train"]
    subprocess.run(cli + [str(cfg_files["one"])], check=True, env=env, timeout=600)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
                    "-m", "bbuvl.cli", "train", str(cfg_files["two"])], check=True, env=env, timeout=600)
    a, b = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert [h["step"] for h in a] == [h["step"] for h in b] == [1, 2, 3]
    # Same samples per step, same initial weights, gradients averaged over ranks: the same curve.
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=2e-3), (x, y)
