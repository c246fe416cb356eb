"""Backbones: each kind loads through from_pretrained, embeds RGB float32 on CPU in eval mode, whatever the input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bbuvl.fewshot.backbones import HFBackbone, PixelBackbone, as_rgb, load_backbone
from bbuvl.tiny.backbones import tiny_backbone

KINDS = ("clip", "dinov2", "resnet")


def photo(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A noisy colour image: red, green and blue differ, so a channel swap changes it."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    arr[..., 0] = np.clip(arr[..., 0].astype(int) + 90, 0, 255)
    return Image.fromarray(arr)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_embeds_a_batch_to_cpu_float32_in_eval_mode(tiny_backbones, kind):
    bb = load_backbone(str(tiny_backbones[kind]), device="cpu")
    assert isinstance(bb, HFBackbone) and bb.kind == kind
    assert not bb.model.training
    out = bb.embed([photo(i) for i in range(3)])
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (3, bb.dim) and np.isfinite(out).all()
    assert not np.allclose(out[0], out[1])


@pytest.mark.parametrize("kind", KINDS)
def test_an_image_embeds_the_same_alone_and_in_a_batch(tiny_backbones, kind):
    bb = load_backbone(str(tiny_backbones[kind]), device="cpu")
    batch = bb.embed([photo(0), photo(1, (30, 60)), photo(2)])
    alone = bb.embed([photo(1, (30, 60))])
    np.testing.assert_allclose(batch[1], alone[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec", ["clip", "pixels"])
def test_bgr_array_declared_bgr_embeds_like_the_rgb_image(tiny_backbones, spec):
    bb = load_backbone(str(tiny_backbones[spec]) if spec != "pixels" else spec, device="cpu")
    img = photo(3)
    bgr = np.asarray(img)[:, :, ::-1].copy()
    np.testing.assert_allclose(bb.embed([bgr], order="BGR"), bb.embed([img]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(bb.embed([bgr], order="RGB"), bb.embed([img]), atol=1e-3)  # undeclared BGR is wrong


@pytest.mark.parametrize("spec", ["dinov2", "pixels"])
def test_greyscale_and_rgba_inputs_are_converted_to_rgb(tiny_backbones, spec):
    bb = load_backbone(str(tiny_backbones[spec]) if spec != "pixels" else spec, device="cpu")
    grey = photo(4).convert("L")
    grey_rgb = grey.convert("RGB")
    np.testing.assert_allclose(bb.embed([grey]), bb.embed([grey_rgb]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bb.embed([np.asarray(grey)]), bb.embed([grey_rgb]), rtol=1e-5, atol=1e-6)
    rgba = photo(5).convert("RGBA")
    assert bb.embed([rgba]).shape == (1, bb.dim)


def test_as_rgb_rejects_float_arrays_and_odd_shapes():
    with pytest.raises(ValueError, match="uint8"):
        as_rgb(np.zeros((4, 4, 3), dtype=np.float64))
    with pytest.raises(ValueError, match="shape"):
        as_rgb(np.zeros((4, 4, 2), dtype=np.uint8))
    assert as_rgb(np.zeros((4, 5, 1), dtype=np.uint8)).mode == "RGB"


@pytest.mark.parametrize("kind", KINDS)
def test_forward_runs_in_inference_mode_eval_and_float32(tiny_backbones, kind):
    bb = load_backbone(str(tiny_backbones[kind]), device="cpu")
    seen = {}

    def hook(module, args, kwargs, output):
        seen.update(inference=torch.is_inference_mode_enabled(), training=module.training,
                    dtype=kwargs["pixel_values"].dtype)

    handle = bb.model.register_forward_hook(hook, with_kwargs=True)
    try:
        with torch.enable_grad():  # a caller with autograd on still gets no graph
            bb.embed([photo(0)])
    finally:
        handle.remove()
    assert seen == {"inference": True, "training": False, "dtype": torch.float32}


def test_backbone_key_is_stable_and_follows_weights_and_preprocessing(tiny_backbones, tmp_path):
    path = tiny_backbones["clip"]
    key = load_backbone(str(path)).key
    assert load_backbone(str(path)).key == key
    other_seed = tiny_backbone("clip", tmp_path / "seed1", image_size=32, seed=1)
    assert load_backbone(str(other_seed)).key != key
    edited = tiny_backbone("clip", tmp_path / "edited", image_size=32, seed=0)
    cfg = json.loads((edited / "preprocessor_config.json").read_text())
    cfg["image_mean"] = [0.5, 0.5, 0.5]
    (edited / "preprocessor_config.json").write_text(json.dumps(cfg))
    assert load_backbone(str(edited)).key != key
    # The same weights under another architecture are another model: its cached vectors were the old one's before
    rewired = tiny_backbone("clip", tmp_path / "rewired", image_size=32, seed=0)
    config = json.loads((rewired / "config.json").read_text())
    config["hidden_act"] = "relu"
    (rewired / "config.json").write_text(json.dumps(config))
    assert load_backbone(str(rewired)).key != key


def test_pixel_backbone_spec_and_centring():
    bb = load_backbone("pixels:8")
    assert isinstance(bb, PixelBackbone) and bb.dim == 8 * 8 * 3
    out = bb.embed([Image.new("RGB", (20, 10), (200, 30, 30))])
    assert abs(float(out.mean())) < 1e-6  # centred: a flat colour is not "similar to everything"
    assert load_backbone("pixels").dim == 16 * 16 * 3
    with pytest.raises(ValueError, match="whole number"):
        load_backbone("pixels:big")


def test_unusable_backbone_paths_fail_with_a_hint(tmp_path):
    with pytest.raises(ValueError, match="tiny-backbone"):
        load_backbone(str(tmp_path / "nowhere"))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not a supported backbone"):
        load_backbone(str(tmp_path / "bert"))
