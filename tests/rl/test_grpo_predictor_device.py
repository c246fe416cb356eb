"""GRPO's predictor reads a tiled photo's regions as `bbuvl predict` does on the device it runs on: built before the
trainer placed the model, it kept the CPU's 64 regions a pass and cut a tiled validation photo that way on the GPU.
The GPU's own run is in tests/train/test_cuda_training.py; here, what the predictor is set to."""

from __future__ import annotations

import pytest

from bbuvl.config import load_config
from bbuvl.infer.predictor import CPU_REGION_BATCH
from bbuvl.rl.trainer import build_grpo_run, make_grpo_trainer, place_predictor
from bbuvl.tiny.model import build_tiny_model

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_grpo_predictor_reads_regions_as_predict_does_on_its_device(small_dataset, tmp_path):
    model = build_tiny_model(tmp_path / "model", seed=0)
    cfg = load_config(None, [
        f"model.path={model}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        "training.method=grpo", f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", "data.teachers=null",
        "data.num_workers=0", f"training.output_dir={tmp_path / 'grpo'}", "training.per_device_batch_size=2",
        "training.bf16=false", "training.gradient_checkpointing=false", "training.use_cpu=true", "grpo.beta=0",
        "grpo.group_size=3", "inference.batch_size=3", "inference.tiles=2x2"])
    run = build_grpo_run(cfg)
    assert run.predictor.cfg.inference.batch_size == 3
    make_grpo_trainer(run, progress=False)
    assert (run.predictor.device, run.predictor.region_batch) == ("cpu", CPU_REGION_BATCH)  # on the CPU, as before
    place_predictor(run.predictor, "cuda:0")  # what make_grpo_trainer does with a trainer on the GPU
    assert (run.predictor.device, run.predictor.region_batch) == ("cuda:0", 3)
    place_predictor(run.predictor, "cpu")
    assert run.predictor.region_batch == CPU_REGION_BATCH
