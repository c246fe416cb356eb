"""`train --overwrite` removes the run already in training.output_dir only once the new one can start: a model.path of
another family than model.family names (configs/base.yaml names qwen2_5_vl, and a Qwen3-VL folder is one override
away) was refused only after the model had loaded, when the previous run's checkpoints, final/ and records were gone."""

from __future__ import annotations

import shutil

import pytest

from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import train


@pytest.mark.usefixtures("one_thread")
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_overwrite_with_a_model_of_another_family_than_named_is_refused_and_keeps_the_run(run_config,
                                                                                       trained_checkpoint, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_checkpoint.parent, run)  # a finished run: checkpoint records, final/, history.json
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    other = build_tiny_model(tmp_path / "qwen3 vl", seed=0, family="qwen3_vl")
    cfg = run_config(f"model.path={other}", "model.family=qwen2_5_vl", f"training.output_dir={run}")
    with pytest.raises(ValueError, match=f"model.family is qwen2_5_vl but {other} holds a qwen3_vl model"):
        train(cfg, progress=False, overwrite=True)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("overrides, refusal", [
    (["model.lora.enabled=true", "model.lora.target_modules=[qq_proj]"], "'qq_proj' \\(did you mean 'q_proj'\\?\\)"),
    (["detection.d_model=100", "detection.num_heads=3"], "d_model 100 must be divisible by detection.num_heads"),
    (["model.attn_implementation=flash_attention_2"], "flash_attention_2 needs a CUDA GPU and the flash-attn package"),
])
def test_overwrite_keeps_the_run_when_the_model_it_builds_is_refused(run_config, trained_checkpoint, tmp_path,
                                                                      overrides, refusal):
    # Each is found only once the model loads; --overwrite removed the previous run before loading it
    import torch

    if "flash_attention_2" in refusal and torch.cuda.is_available():
        pytest.skip("a CUDA machine may hold flash-attn: the refusal is for one that cannot run it")
    run = tmp_path / "run"
    shutil.copytree(trained_checkpoint.parent, run)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with pytest.raises(ValueError, match=refusal):
        train(run_config(f"training.output_dir={run}", *overrides), progress=False, overwrite=True)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
