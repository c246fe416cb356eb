"""`model.reuse_modules`: a run built on a checkpoint starts its head and vision positions from the checkpoint's
files where names and shapes agree, and builds the rest fresh."""

import torch
from safetensors.torch import load_file

from bbuvl.model.checkpoint import HEAD_FILE, POSITIONS_FILE
from bbuvl.train.trainer import build_run


def _states(run) -> dict[str, dict[str, torch.Tensor]]:
    return {HEAD_FILE: run.model.detection_head.state_dict(), POSITIONS_FILE: run.model.vision_positions.state_dict()}


def test_reused_tensors_equal_the_checkpoint_and_the_rest_stay_as_built(run_config, trained_checkpoint):
    # 12 queries against the checkpoint's 8, and fine features it did not have: those tensors cannot be reused.
    changed = ("detection.num_queries=12", "detection.fine_features=true", f"model.path={trained_checkpoint}")
    reused = _states(build_run(run_config(*changed, "model.reuse_modules=true")))
    fresh = _states(build_run(run_config(*changed)))
    kept_new = 0
    for name, state in reused.items():
        saved = load_file(trained_checkpoint / name)
        for key, tensor in state.items():
            if key in saved and saved[key].shape == tensor.shape:
                assert torch.equal(tensor, saved[key]), (name, key)
            else:  # built exactly as a run without reuse builds it (same seed)
                assert torch.equal(tensor, fresh[name][key]), (name, key)
                kept_new += 1
    assert kept_new > 0
    # Without reuse, the head's matching tensors are a fresh initialisation, not the checkpoint's.
    saved_head = load_file(trained_checkpoint / HEAD_FILE)
    assert any(not torch.equal(t, saved_head[k]) for k, t in fresh[HEAD_FILE].items()
               if k in saved_head and saved_head[k].shape == t.shape and t.dim() > 1)
