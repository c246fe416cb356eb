"""Packed rows keep their samples apart in the full-attention families, and leak in Qwen3.5's linear attention.

The packed layout is docs/design.md's (position ids [4, 1, L], no attention mask, no cache), built by the
project's own `PackedCollator`, and compared with each sample run alone through `PaddedCollator`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bbuvl.data.families import get_family
from bbuvl.data.labels import Hierarchy
from bbuvl.encode.chat import SPAN_STUDENT, SPAN_TEACHER, ChatEncoder, Turn
from bbuvl.encode.collate import Batch, PackedCollator, PaddedCollator
from bbuvl.encode.prompts import system_prompt
from bbuvl.model.loading import load_model_and_processor
from bbuvl.tiny.model import build_tiny_model

TOLERANCE = 1e-4


def _img(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _loaded(family: str, tmp_path_factory) -> tuple:
    return load_model_and_processor(str(build_tiny_model(tmp_path_factory.mktemp(family) / "ckpt", family=family)))


def _samples(processor, factor: int) -> list[dict]:
    """Three conversations (one with a teacher turn) at model-frame sizes, i.e. multiples of the family's factor."""
    encoder = ChatEncoder(processor, system_prompt(["线缆", "标签贴纸"], Hierarchy.load(), "en"), "en")
    ans = lambda i: '[{"bbox_2d": [%d, %d, %d, %d], "label": "线缆"}]' % (i, i + 1, i + 20, i + 30)  # noqa: E731
    f = factor
    conversations = [
        [Turn(_img(4 * f, 2 * f, 1), ans(3), SPAN_STUDENT)],
        [Turn(_img(2 * f, 3 * f, 2), ans(10), SPAN_TEACHER), Turn(_img(3 * f, 3 * f, 3), "[]", SPAN_STUDENT)],
        [Turn(_img(5 * f, 2 * f, 4), ans(7) + ans(8), SPAN_STUDENT)],
    ]
    return [encoder.encode(turns) for turns in conversations]


def _forward(model, batch: Batch) -> torch.Tensor:
    kw = {k: getattr(batch, k) for k in ("input_ids", "position_ids", "pixel_values", "image_grid_thw", "mm_token_type_ids")}
    if batch.attention_mask is not None:
        kw["attention_mask"] = batch.attention_mask
    with torch.no_grad():
        return model(**kw, use_cache=False).logits


def packed_vs_single(family: str, tmp_path_factory) -> list[float]:
    """Per sample, the largest |packed logit - logit of the sample run alone|."""
    model, processor = _loaded(family, tmp_path_factory)
    tok = processor.tokenizer
    pad, image = tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|image_pad|>")
    samples = _samples(processor, get_family(family).factor)
    packed = PackedCollator(pad, image)(samples)
    assert packed.position_ids.shape == (4, 1, packed.input_ids.shape[1]) and packed.attention_mask is None
    logits = _forward(model, packed)
    diffs, offset = [], 0
    for s in samples:
        n = s.input_ids.numel()
        alone = _forward(model, PaddedCollator(pad, image)([s]))
        diffs.append((logits[0, offset:offset + n] - alone[0]).abs().max().item())
        offset += n
    return diffs


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_packed_logits_equal_samples_run_alone_in_full_attention_families(family, tmp_path_factory):
    assert get_family(family).packs_isolated
    diffs = packed_vs_single(family, tmp_path_factory)
    assert max(diffs) <= TOLERANCE, f"{family}: packed logits differ from single by {diffs}"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_qwen3_5_packed_samples_read_each_other_through_linear_attention(tmp_path_factory):
    # Gated DeltaNet's recurrent state and causal convolution run along the whole row: the first sample is alone
    # at the row's start, every later one sees its predecessors. This is why families.py says packs_isolated=False.
    assert not get_family("qwen3_5").packs_isolated
    diffs = packed_vs_single("qwen3_5", tmp_path_factory)
    assert diffs[0] <= TOLERANCE, f"the first sample has nothing before it, yet differs by {diffs[0]}"
    assert min(diffs[1:]) > 100 * TOLERANCE, f"later samples should differ well beyond tolerance: {diffs}"
