"""Vision attention as one SDPA call per block length: the same outputs and gradients as transformers' call per
block, per family, on photos whose windows come in several lengths."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from torch import nn

from bbuvl.model.loading import load_model_and_processor
from bbuvl.model.window_attention import block_attention, blocks_by_length, use_batched_window_attention
from bbuvl.tiny.model import build_tiny_model


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl", "qwen3_5"])
def loaded(request, tmp_path_factory):
    folder = build_tiny_model(tmp_path_factory.mktemp(request.param) / "model", seed=0, family=request.param)
    model, processor = load_model_and_processor(str(folder))
    return folder, model, processor


def _batched(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if type(m).__name__.startswith("Batched")]


def _stock(model: nn.Module) -> nn.Module:
    """A copy of `model` with transformers' own vision attention back."""
    stock = copy.deepcopy(model)
    for m in _batched(stock):
        m.__class__ = type(m).__mro__[1]
    return stock


def _photos(processor) -> dict[str, torch.Tensor]:
    # Sides that are not multiples of a window (8 x 8 patches of 14 or 16 px): whole, edge and corner windows.
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in ((200, 150), (150, 200), (200, 150))]
    return dict(processor.image_processor(images=images, return_tensors="pt"))


def _features(model: nn.Module, photos: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model.model.get_image_features(pixel_values=photos["pixel_values"], image_grid_thw=photos["image_grid_thw"])
    feats = getattr(out, "pooler_output", out)
    return torch.cat(list(feats)) if isinstance(feats, (list, tuple)) else feats


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_loader_swaps_every_vision_attention_and_saves_the_same_file(loaded, tmp_path):
    folder, model, _ = loaded
    assert len(_batched(model)) == model.config.vision_config.depth
    model.save_pretrained(tmp_path)
    with safe_open(str(folder / "model.safetensors"), "pt") as a, safe_open(str(tmp_path / "model.safetensors"), "pt") as b:
        assert set(a.keys()) == set(b.keys())


def test_outputs_and_gradients_equal_one_call_per_block(loaded):
    _, model, processor = loaded
    photos = _photos(processor)
    stock = _stock(model)
    assert not _batched(stock)
    fast_out, slow_out = _features(model, photos), _features(stock, photos)
    torch.testing.assert_close(fast_out, slow_out, atol=1e-5, rtol=1e-4)
    fast_out.square().sum().backward()
    slow_out.square().sum().backward()
    for (name, a), (_, b) in zip(model.model.visual.named_parameters(), stock.model.visual.named_parameters()):
        if a.grad is not None or b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
    model.zero_grad()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eager_attention_keeps_transformers_path(tmp_path):
    folder = build_tiny_model(tmp_path / "model", seed=0, family="qwen2_5_vl")
    model, processor = load_model_and_processor(str(folder), attn_implementation="eager")
    photos = _photos(processor)
    torch.testing.assert_close(_features(model, photos), _features(_stock(model), photos), atol=0, rtol=0)


def test_blocks_group_by_length_and_attention_stays_inside_each_block():
    irregular = torch.tensor([0, 4, 8, 11, 15, 15, 17])  # lengths 4, 4, 3, 4, 0 (empty), 2: gathered
    assert blocks_by_length(irregular) == {4: [0, 4, 11], 3: [8], 2: [15]}
    back_to_back = torch.tensor([0, 4, 8, 12, 16])  # whole windows, same-size photos: read as a view
    torch.manual_seed(0)
    q, k, v = (torch.randn(17, 2, 8) for _ in range(3))
    for cu in (irregular, back_to_back):
        bounds = cu.tolist()
        got = block_attention(q[:bounds[-1]], k[:bounds[-1]], v[:bounds[-1]], cu, scale=8 ** -0.5)
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b == a:
                continue
            w = torch.softmax(torch.einsum("qhd,khd->hqk", q[a:b], k[a:b]) * 8 ** -0.5, dim=-1)
            torch.testing.assert_close(got[a:b], torch.einsum("hqk,khd->qhd", w, v[a:b]), atol=1e-6, rtol=1e-5)


def test_a_model_without_vision_attention_is_left_alone():
    assert use_batched_window_attention(nn.Sequential(nn.Linear(2, 2))) == 0
