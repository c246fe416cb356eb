"""Padded and packed batches give the same per-sample results as samples run one by one."""

import numpy as np
import pytest
import torch
from PIL import Image

from bbuvl.data.families import get_family
from bbuvl.data.labels import Hierarchy
from bbuvl.encode.chat import SPAN_STUDENT, SPAN_TEACHER, ChatEncoder, Turn
from bbuvl.encode.collate import PackedCollator, PaddedCollator
from bbuvl.encode.positions import mrope_positions
from bbuvl.encode.prompts import system_prompt
from bbuvl.model.lm_loss import span_lm_loss


def _img(w, h, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _sample(encoder, turns):
    return encoder.encode(turns)


@pytest.fixture(scope="module")
def samples(tiny):
    _, processor = tiny
    encoder = ChatEncoder(processor, system_prompt(["线缆", "标签贴纸"], Hierarchy.load(), "en"), "en")
    ans = lambda i: '[{"bbox_2d": [%d, %d, %d, %d], "label": "线缆"}]' % (i, i + 1, i + 20, i + 30)  # noqa: E731
    return [
        _sample(encoder, [Turn(_img(112, 56, 1), ans(3), SPAN_STUDENT)]),
        _sample(encoder, [Turn(_img(56, 84, 2), ans(10), SPAN_TEACHER), Turn(_img(84, 84, 3), "[]", SPAN_STUDENT)]),
        _sample(encoder, [Turn(_img(140, 56, 4), ans(7) + ans(8), SPAN_STUDENT)]),
    ]


def _ids(tiny):
    tok = tiny[1].tokenizer
    return tok.convert_tokens_to_ids("<|endoftext|>"), tok.convert_tokens_to_ids("<|image_pad|>")


def _forward(model, batch):
    kw = {k: getattr(batch, k) for k in ("input_ids", "position_ids", "pixel_values", "image_grid_thw")}
    if batch.attention_mask is not None:
        kw["attention_mask"] = batch.attention_mask
    with torch.no_grad():
        return model(**kw, use_cache=False, output_hidden_states=True)


def test_mrope_positions_equal_the_models_rope_index(tiny, samples):
    model, _ = tiny
    for s in samples:
        ref, _ = model.model.get_rope_index(s.input_ids[None], mm_token_type_ids=s.mm_token_type_ids[None],
                                            image_grid_thw=s.image_grid_thw)
        ours = mrope_positions(s.input_ids, s.image_grid_thw, _ids(tiny)[1])
        assert torch.equal(ref[:, 0], ours)


def test_packed_logits_and_losses_equal_samples_run_alone(tiny, tiny_family, samples):
    if not get_family(tiny_family).packs_isolated:
        pytest.skip(f"{tiny_family} cannot isolate packed samples; training refuses packing (tests/test_families.py)")
    model, _ = tiny
    pad, image = _ids(tiny)
    packed = PackedCollator(pad, image)(samples)
    assert packed.position_ids.shape == (4, 1, packed.input_ids.shape[1])
    assert packed.attention_mask is None
    out = _forward(model, packed)
    offset = 0
    single_losses = []
    for i, s in enumerate(samples):
        one = PaddedCollator(pad, image)([s])
        alone = _forward(model, one)
        n = s.input_ids.numel()
        diff = (out.logits[0, offset:offset + n] - alone.logits[0]).abs().max().item()
        assert diff <= 1e-4, f"sample {i}: packed logits differ by {diff}"
        assert torch.equal(packed.sample_index[0, offset:offset + n], torch.full((n,), i))
        single_losses.append(span_lm_loss(alone.hidden_states[-1], model.lm_head, one.labels, one.span_ids))
        offset += n
    got = span_lm_loss(out.hidden_states[-1], model.lm_head, packed.labels, packed.span_ids)
    # the batch's span loss is the token-weighted mean of the samples' span losses
    ref_s = sum(l.student * l.n_student for l in single_losses) / sum(l.n_student for l in single_losses)
    ref_t = sum(l.teacher * l.n_teacher for l in single_losses) / sum(l.n_teacher for l in single_losses)
    assert torch.allclose(got.student, ref_s, atol=1e-5) and torch.allclose(got.teacher, ref_t, atol=1e-5)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_span_losses_equal_samples_run_alone(tiny, samples, side):
    model, _ = tiny
    pad, image = _ids(tiny)
    batch = PaddedCollator(pad, image, padding_side=side)(samples)
    out = _forward(model, batch)
    for b, s in enumerate(samples):
        alone_batch = PaddedCollator(pad, image)([s])
        alone = _forward(model, alone_batch)
        ref = span_lm_loss(alone.hidden_states[-1], model.lm_head, alone_batch.labels, alone_batch.span_ids)
        got = span_lm_loss(out.hidden_states[-1][b:b + 1], model.lm_head, batch.labels[b:b + 1], batch.span_ids[b:b + 1])
        assert torch.allclose(got.student, ref.student, atol=1e-5), (side, b)
        assert torch.allclose(got.teacher, ref.teacher, atol=1e-5), (side, b)
        assert got.n_student == ref.n_student and got.n_teacher == ref.n_teacher


def test_budgets_drop_samples_with_a_count(tiny, samples):
    pad, image = _ids(tiny)
    per_sample = [int(s.mm_token_type_ids.sum()) for s in samples]
    c = PaddedCollator(pad, image, max_vision_tokens_per_batch=per_sample[0] + per_sample[1])
    batch = c(samples)
    assert len(batch.meta) == 2 and c.budget.dropped == 1
    p = PackedCollator(pad, image, max_tokens=samples[0].input_ids.numel())
    assert p(samples).input_ids.shape[1] == samples[0].input_ids.numel() and p.budget.dropped == 2
    # grid info is never dropped: one grid row per image kept
    assert batch.image_grid_thw.shape[0] == 1 + 2


@pytest.mark.parametrize("collator", [PaddedCollator, PackedCollator])
def test_stand_ins_are_left_out_beside_real_samples_and_a_batch_of_them_alone_is_marked(tiny, samples, collator):
    from dataclasses import replace

    from bbuvl.encode.collate import STAND_IN
    from bbuvl.model.loss_scale import LossDenominators

    c = collator(*_ids(tiny))
    stand_in = [replace(s, meta={STAND_IN: True}) for s in samples]
    mixed = c([samples[0], stand_in[1], samples[2]])
    assert not mixed.stand_in and len(mixed) == 2 and mixed.dropped == 0 and c.budget.dropped == 0
    assert int(mixed.mm_token_type_ids.sum()) == samples[0].num_vision_tokens + samples[2].num_vision_tokens
    alone = c(stand_in[1:])
    assert alone.stand_in and len(alone) == 1  # run for the processes' collectives, one sample's cost
    # the step's loss denominators count the real samples alone (model/loss_scale.py)
    assert LossDenominators.count([mixed, alone]) == LossDenominators.count([mixed])
    assert LossDenominators.count([alone]) == LossDenominators(0.0, 0.0, 0.0)
