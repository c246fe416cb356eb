"""The system prompt read once for a padded batch: the same loss, gradients and detections as every row reading it."""

from __future__ import annotations

import pytest
import torch

from bbuvl.encode.collate import PackedCollator
from bbuvl.model.shared_prefix import (MIN_SHARED_TOKENS, can_share_prefix, checkpointed, partitioned,
                                        shared_prefix_length)
from bbuvl.model.vlm import core_model
from bbuvl.train.trainer import build_run


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture()
def run_and_batch(run_config):
    run = build_run(run_config("training.per_device_batch_size=4"))
    torch.manual_seed(0)
    batch = run.collator([run.train_dataset[i] for i in range(4)])
    return run, batch


def _loss_and_grads(model, batch, shared: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model.shared_prefix = shared
    model.zero_grad(set_to_none=True)
    out = model(batch)
    out.loss.backward()
    terms = {k: v.detach() for k, v in vars(out).items() if isinstance(v, torch.Tensor)}
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return terms, grads


def test_the_prefix_is_the_system_prompt_and_stops_before_any_image(run_and_batch):
    run, batch = run_and_batch
    prefix = shared_prefix_length(batch)
    assert prefix >= MIN_SHARED_TOKENS
    assert prefix >= run.train_dataset.encoder.system_length
    assert not batch.mm_token_type_ids[:, :prefix].any()
    assert (batch.input_ids[:, :prefix] == batch.input_ids[:1, :prefix]).all()
    assert batch.attention_mask[:, :prefix].all()
    # The first token after it differs between rows or is an image's.
    at = batch.input_ids[:, prefix]
    assert (at != at[0]).any() or batch.mm_token_type_ids[:, prefix].any() or batch.mm_token_type_ids[:, prefix + 1].any()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_loss_terms_and_every_gradient_equal_the_full_pass(run_and_batch):
    run, batch = run_and_batch
    model = run.model
    model.train()
    text_cfg = getattr(model.config, "text_config", model.config)
    if "linear_attention" in (getattr(text_cfg, "layer_types", None) or []):
        # Gated DeltaNet updates its cache in place: the full pass is kept (model/shared_prefix.py).
        assert model.shared_prefix is False
        return
    assert model.shared_prefix is True
    full_terms, full_grads = _loss_and_grads(model, batch, shared=False)
    shared_terms, shared_grads = _loss_and_grads(model, batch, shared=True)
    assert full_terms.keys() == shared_terms.keys() and "loss_caption" in full_terms
    for name in full_terms:
        torch.testing.assert_close(shared_terms[name], full_terms[name], atol=1e-5, rtol=1e-5, msg=name)
    assert full_grads.keys() == shared_grads.keys()
    for name in full_grads:
        scale = float(full_grads[name].abs().max())
        torch.testing.assert_close(shared_grads[name], full_grads[name], atol=1e-5 * max(scale, 1e-3), rtol=1e-4,
                                   msg=name)


def test_detections_equal_the_full_pass(run_and_batch):
    run, batch = run_and_batch
    model = run.model
    model.eval()
    outs = []
    for shared in (False, True):
        model.shared_prefix = shared and model.shared_prefix
        with torch.no_grad():
            outs.append(model.detect(batch))
    torch.testing.assert_close(outs[1].boxes, outs[0].boxes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[1].objectness_logits, outs[0].objectness_logits, atol=1e-5, rtol=1e-5)


def test_no_prefix_for_one_row_packed_rows_or_rows_that_start_differently(run_and_batch):
    run, batch = run_and_batch
    samples = [run.train_dataset[i] for i in range(3)]
    assert shared_prefix_length(run.collator(samples[:1])) == 0
    tok = run.processor.tokenizer
    packed = PackedCollator(pad_token_id=tok.pad_token_id, image_token_id=tok.convert_tokens_to_ids("<|image_pad|>"))
    assert shared_prefix_length(packed(samples)) == 0
    padded = run.collator(samples)
    padded.attention_mask[1, 3] = 0  # a row that does not read its fourth token shares no more than three
    assert shared_prefix_length(padded) == 0


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_gradient_checkpointing_reads_every_row_whole(run_and_batch):
    run, batch = run_and_batch
    core = core_model(run.model.vlm)
    assert not checkpointed(core.model)
    core.activation_checkpointing_enable()
    try:
        assert checkpointed(core.model)
        run.model.train()
        out = run.model(batch)  # the full pass: the cache would be replayed by the recomputation
        out.loss.backward()
        assert torch.isfinite(out.loss)
    finally:
        core.activation_checkpointing_disable()
        run.model.zero_grad(set_to_none=True)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_head_mode_pads_on_the_right_so_photos_of_two_sizes_share_the_prompt(trained_checkpoint):
    from PIL import Image

    from bbuvl.infer.predictor import Predictor

    predictor = Predictor.load(trained_checkpoint, device="cpu")
    photos = [Image.new("RGB", size, colour) for size, colour in
              (((224, 168), (200, 40, 40)), ((168, 224), (40, 200, 40)), ((224, 224), (40, 40, 200)))]
    prepared = [predictor.prepare(photo) for photo in photos]
    left = predictor.batch(prepared, with_teachers=False)
    right = predictor.batch(prepared, with_teachers=False, for_generation=False)
    assert shared_prefix_length(left) == 0  # rows of different lengths do not start together on the left
    assert shared_prefix_length(right) >= MIN_SHARED_TOKENS
    with torch.no_grad():
        a, b = predictor.model.detect(left), predictor.model.detect(right)
    torch.testing.assert_close(b.boxes, a.boxes, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.objectness_logits, a.objectness_logits, atol=1e-5, rtol=1e-5)


def test_zero3_sharded_weights_read_every_row_whole(run_and_batch):
    run, _ = run_and_batch
    core = core_model(run.model.vlm)
    assert can_share_prefix(core.model)
    first = next(core.model.language_model.parameters())
    first.ds_id = 0  # what DeepSpeed ZeRO-3 marks each sharded parameter with
    try:
        assert partitioned(core.model) and not can_share_prefix(core.model)
    finally:
        del first.ds_id
