"""SDPA per packed sample gives what the dense block-causal mask gave, without the mask; padded batches are untouched."""

from __future__ import annotations

import json

import pytest
import torch

from bbuvl.data.families import get_family
from bbuvl.encode.collate import PackedCollator, PaddedCollator
from bbuvl.model.packed_attention import PACKED_SDPA, sample_lengths, use_packed_sdpa
from bbuvl.model.vlm import core_model
from bbuvl.train.trainer import build_run
from tests.model.test_families_packing import _forward, _loaded, _samples

TOLERANCE = 1e-5


def test_sample_lengths_cut_where_text_positions_restart():
    positions = torch.tensor([0, 1, 2, 0, 1, 0, 1, 2, 3])
    assert sample_lengths(positions) == [3, 2, 4]
    assert sample_lengths(torch.arange(5)) == [5]
    assert sample_lengths(torch.tensor([7, 8, 0])) == [2, 1]  # a row need not start at position 0


@pytest.mark.parametrize("family", ["qwen2_5_vl", pytest.param("qwen3_vl", marks=pytest.mark.slow)])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_packed_logits_and_padded_logits_equal_the_dense_mask_path(family, tmp_path_factory):
    model, processor = _loaded(family, tmp_path_factory)
    tok = processor.tokenizer
    pad, image = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|image_pad|>")
    samples = _samples(processor, get_family(family).factor)
    packed, padded = PackedCollator(pad, image)(samples), PaddedCollator(pad, image)(samples)
    dense_packed, sdpa_padded = _forward(model, packed), _forward(model, padded)
    assert use_packed_sdpa(model) and model.config._attn_implementation == PACKED_SDPA
    assert (_forward(model, packed) - dense_packed).abs().max().item() <= TOLERANCE
    # A padded batch carries its mask: the very same SDPA call as before, to the bit.
    assert torch.equal(_forward(model, padded), sdpa_padded)


def _loss_and_grads(run, batch) -> tuple[float, dict[str, torch.Tensor]]:
    run.model.zero_grad(set_to_none=True)
    loss = run.model(batch).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in run.model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_training_on_packed_rows_uses_packed_sdpa_with_the_dense_mask_paths_loss_and_gradients(run_config):
    cfg = run_config("data.collator=packed", "detection.enabled=true")
    family = cfg.model.resolve_family()
    if not family.packs_isolated:  # Qwen3.5's linear-attention layers take no sequence boundaries: packing is refused
        with pytest.raises(ValueError, match=f"data.collator: packed is refused for {family.name}"):
            build_run(cfg)
        return
    run = build_run(cfg)
    vlm = core_model(run.model.vlm)
    assert vlm.config._attn_implementation == PACKED_SDPA
    batch = run.collator([run.train_dataset[i] for i in range(3)])
    assert batch.position_ids.shape[:2] == (4, 1) and len(sample_lengths(batch.position_ids[0, 0])) == 3
    run.model.train()
    torch.manual_seed(0)
    loss, grads = _loss_and_grads(run, batch)
    vlm.set_attn_implementation("sdpa")
    torch.manual_seed(0)
    dense_loss, dense_grads = _loss_and_grads(run, batch)
    assert loss == pytest.approx(dense_loss, rel=1e-5, abs=1e-6)
    assert grads.keys() == dense_grads.keys()
    for name, g in grads.items():
        assert torch.allclose(g, dense_grads[name], rtol=1e-4, atol=1e-6), name


def test_padded_training_keeps_sdpa_and_a_saved_model_names_no_custom_attention(run_config, tmp_path):
    run = build_run(run_config("detection.enabled=false"))
    vlm = core_model(run.model.vlm)
    assert vlm.config._attn_implementation == "sdpa"
    # A checkpoint trained on packed rows must load where this module was never imported.
    use_packed_sdpa(vlm)
    vlm.save_pretrained(tmp_path / "saved")
    assert PACKED_SDPA not in (tmp_path / "saved" / "config.json").read_text()
    assert "attn_implementation" not in json.loads((tmp_path / "saved" / "config.json").read_text())
