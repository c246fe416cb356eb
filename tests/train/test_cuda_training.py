"""Training and prediction on a GPU, as a user with one runs the demo's two configs (skipped without CUDA).

Every other test runs on one device, where a tensor left on the CPU beside one on the GPU goes unseen: here the
demo's stage B (faults weighed, the head's finer levels and pixels, the grounding terms) and stage A train a few steps
on cuda, and each checkpoint predicts in head and generate mode there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bbuvl.config import load_config
from bbuvl.synthetic.dataset import synthesize
from bbuvl.synthetic.shapes import synthesize_shapes
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("config, framing, extra", [
    ("demo.yaml", "closeup", ["detection.caption_refit.steps=0", "detection.pixel_context=0", "loss.grounding_attention=4",
                              "loss.coordinate_regression=4"]),
    ("demo_shapes.yaml", None, []),
])
def test_the_demo_configs_train_and_predict_on_cuda(tmp_path: Path, config: str, framing: str | None,
                                                    extra: list[str]):
    data = tmp_path / "data"
    if framing:
        synthesize(data, 8, 2, seed=1, size=(448, 336), num_teachers=0, framing=framing)
    else:
        synthesize_shapes(data, 8, 2, seed=1, size=(224, 224), num_teachers=0)
    model = build_tiny_model(tmp_path / "model", seed=0)
    cfg = load_config(CONFIGS / config, [
        f"model.path={model}", f"data.train={data / 'train.jsonl'}", f"data.val={data / 'val.jsonl'}",
        f"training.output_dir={tmp_path / 'run'}", "training.max_steps=3", "training.logging_steps=1", "training.use_cpu=false",
        "training.per_device_batch_size=2", *extra])
    result = train(cfg, progress=False)
    losses = [e["loss"] for e in result["history"] if "loss" in e]
    assert losses and all(torch.isfinite(torch.tensor(losses))), result["history"]
    final = Path(result["final"])
    for mode in ("head", "generate"):
        out = tmp_path / f"pred_{mode}.jsonl"
        done = subprocess.run([sys.executable, "-m", "bbuvl.cli", "predict", "-c", str(final), "-i",
                               str(data / "val.jsonl"), "-o", str(out), "--mode", mode, "--device", "cuda"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert len([json.loads(line) for line in out.read_text().splitlines()]) == 2
