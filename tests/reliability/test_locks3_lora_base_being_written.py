"""A LoRA checkpoint loads its base model (its run config's model.path) too: predict, serve and choose-tiles refuse it
while another command writes that base, naming the writer, as they refuse the checkpoint itself. The writer here is a real lock
(bbuvl/outputs.py) held by another process, as `bbuvl model export` holds the folder it writes."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from tests.reliability.test_train2_model_being_written import _hold


@pytest.mark.slow  # a LoRA run of one step (~25 s)
def test_predict_and_serve_refuse_a_lora_checkpoint_whose_base_is_being_written(run_config, small_dataset, tmp_path):
    from bbuvl.train.trainer import train

    base = tmp_path / "base"
    shutil.copytree(run_config().model.path, base)  # the session's tiny model is shared: a copy of it
    cfg = run_config("model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "training.max_steps=1",
                     "data.val=null")
    cfg.model.path = str(base)
    final = Path(train(cfg, progress=False)["final"])
    child = _hold(base, "model export")
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        out = tmp_path / "p.jsonl"
        for args in (["predict", "-c", final, "-i", small_dataset / "val.jsonl", "-o", out, "--device", "cpu"],
                     ["serve", "-c", final, "--port", port, "--device", "cpu"],
                     ["choose-tiles", "-c", final, "--gt", small_dataset / "val.jsonl", "--out", tmp_path / "scales",
                      "--device", "cpu"]):
            result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400", "BBUVL_API_KEYS": "k" * 32})
            said = " ".join(result.output.split())
            assert result.exit_code == 2, result.output
            assert (f"{base} (--checkpoint's base model): `bbuvl model export` (pid {child.pid}) is still writing it"
                    in said), said
            assert "Traceback" not in said and not out.exists() and not (tmp_path / "scales").exists()
            assert not (final / "tile_scale.json").exists()
    finally:
        child.kill()
        child.wait()
