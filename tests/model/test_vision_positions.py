"""Absolute vision positions: codes in the tower's token order, zero start, one hook for every image path."""

from __future__ import annotations

import torch
from PIL import Image

from bbuvl.model.vision_positions import VisionPositions, cell_code, cell_frequencies


def test_cell_code_is_raster_order_per_image_and_repeats_over_time():
    freqs = cell_frequencies(4)
    code = cell_code(torch.tensor([[1, 4, 6], [2, 2, 2]]), merge_size=2, frequencies=freqs)
    assert code.shape == (2 * 3 + 2 * 1 * 1, 16)
    # Image 0 is 2 rows x 3 cols: token 4 is row 1, col 1.
    row, col = torch.tensor(1.0) * freqs, torch.tensor(1.0) * freqs
    assert torch.allclose(code[4], torch.cat([row.sin(), row.cos(), col.sin(), col.cos()]))
    assert torch.equal(code[6], code[7])  # the second image: one cell, two temporal copies


def test_same_cell_gets_the_same_code_whatever_the_image_size():
    freqs = cell_frequencies()
    small = cell_code(torch.tensor([[1, 4, 4]]), 2, freqs)
    large = cell_code(torch.tensor([[1, 8, 8]]), 2, freqs)
    assert torch.equal(small[3], large[4 + 1])  # (row 1, col 1) in a 2x2 and in a 4x4 grid


def test_zero_init_leaves_the_pretrained_vision_output_unchanged(tiny):
    model, processor = tiny
    visual = model.model.visual
    img = Image.new("RGB", (112, 84), (120, 40, 200))
    enc = processor.image_processor(images=[img], return_tensors="pt")
    with torch.no_grad():
        before = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"]).pooler_output.clone()
        positions = VisionPositions(before.shape[-1], merge_size=2)
        handle = positions.attach(visual)
        try:
            same = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"]).pooler_output
            positions.proj.bias.fill_(0.5)
            shifted = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"]).pooler_output
        finally:
            handle.remove()
    assert torch.equal(before, same)
    assert torch.allclose(shifted, before + 0.5)


def test_positions_train_from_zero(tiny):
    model, processor = tiny
    visual = model.model.visual
    img = Image.new("RGB", (112, 112), (10, 200, 30))
    enc = processor.image_processor(images=[img], return_tensors="pt")
    positions = VisionPositions(model.config.text_config.hidden_size, merge_size=2)
    handle = positions.attach(visual)
    try:
        out = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"]).pooler_output
        # A loss that depends on where a token sits: only the positions can lower it.
        target = torch.arange(out.shape[0], dtype=out.dtype)[:, None].expand_as(out)
        ((out - target) ** 2).mean().backward()
    finally:
        handle.remove()
    assert positions.proj.weight.grad is not None and positions.proj.weight.grad.abs().sum() > 0
