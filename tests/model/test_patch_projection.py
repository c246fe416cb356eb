"""The patch embedding as a matrix product: the same outputs and gradients as the convolution, per family."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors import safe_open
from torch import nn

from bbuvl.model.loading import load_model_and_processor
from bbuvl.model.patch_projection import LinearPatchProjection, is_patch_convolution, use_linear_patch_projection
from bbuvl.tiny.model import build_tiny_model


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl", "qwen3_5"])
def loaded(request, tmp_path_factory):
    folder = build_tiny_model(tmp_path_factory.mktemp(request.param) / "model", seed=0, family=request.param)
    model, _ = load_model_and_processor(str(folder))
    return folder, model


def _patch_embed(model: nn.Module) -> nn.Module:
    return next(m for m in model.modules() if isinstance(m, nn.Conv3d))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_loader_swaps_the_patch_convolution_and_saves_the_same_file(loaded, tmp_path):
    folder, model = loaded
    assert type(_patch_embed(model)) is LinearPatchProjection
    model.save_pretrained(tmp_path)
    with safe_open(str(folder / "model.safetensors"), "pt") as a, safe_open(str(tmp_path / "model.safetensors"), "pt") as b:
        assert set(a.keys()) == set(b.keys())
        for key in a.keys():
            assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key


def test_outputs_and_gradients_equal_the_convolution(loaded):
    _, model = loaded
    fast = _patch_embed(model)
    slow = copy.deepcopy(fast)
    slow.__class__ = nn.Conv3d
    torch.manual_seed(0)
    x = torch.randn(37, fast.in_channels, *fast.kernel_size)
    outs, grads = [], []
    for module in (fast, slow):
        module.zero_grad()
        out = module(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in module.parameters()])
    assert outs[0].shape == outs[1].shape == (37, fast.out_channels, 1, 1, 1)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    model.zero_grad()


def test_an_input_larger_than_the_kernel_is_convolved():
    conv = nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, 4, 4))
    reference = copy.deepcopy(conv)
    assert use_linear_patch_projection(conv) == 1 and type(conv) is LinearPatchProjection
    x = torch.randn(2, 3, 4, 8, 8)
    torch.testing.assert_close(conv(x), reference(x))


@pytest.mark.parametrize("conv, swapped", [
    (nn.Conv3d(3, 8, kernel_size=(2, 14, 14), stride=(2, 14, 14)), True),
    (nn.Conv3d(3, 8, kernel_size=3, stride=1, padding=1), False),  # overlapping windows: a real convolution
    (nn.Conv3d(3, 8, kernel_size=2, stride=2, padding=1), False),
    (nn.Conv3d(4, 8, kernel_size=2, stride=2, groups=2), False),
])
def test_only_disjoint_patch_convolutions_are_swapped(conv, swapped):
    assert is_patch_convolution(conv) is swapped
    assert use_linear_patch_projection(nn.Sequential(conv)) == int(swapped)
