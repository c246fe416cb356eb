"""`train --overwrite` removes the run already in training.output_dir only once the new one can start: a model.path of
another family than model.family names (configs/base.yaml names qwen2_5_vl, and a Qwen3-VL folder is one override
away) was refused only after the model had loaded, when the previous run's checkpoints, final/ and records were gone."""

from __future__ import annotations

import shutil

import pytest

from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import train


@pytest.mark.usefixtures("one_thread")
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
