"""The model wrapper: the head reads the real VLM's features of a photo and can fit that photo exactly."""

import dataclasses

import pytest
import torch

from bbuvl.model.box_ops import box_iou, box_xyxy_to_cxcywh, box_cxcywh_to_xyxy
from bbuvl.model.vlm import core_model
from bbuvl.train.trainer import build_run


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_head_alone_on_one_synthetic_photo_reproduces_its_boxes_and_captions(run_config):
    run = build_run(run_config("detection.num_queries=20", "detection.caption_layers=2", "detection.decoder_layers=2",
                               "data.teacher_ratio=0"))
    model, tok = run.model, run.processor.tokenizer
    sample = run.train_dataset[0]
    batch = run.collator([sample])
    core = core_model(model.vlm)
    with torch.no_grad():  # the VLM is frozen: its features are computed once
        out = core.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                         pixel_values=batch.pixel_values, image_grid_thw=batch.image_grid_thw, use_cache=False,
                         output_hidden_states=True, return_dict=True)
    embeds, hidden = out.hidden_states[0].detach(), out.last_hidden_state.detach()
    # The vision memory is the input embeddings at the student image's pad tokens (docs/design.md), not text.
    n_vision = int(batch.det_vision_mask.sum())
    assert n_vision == int(batch.mm_token_type_ids.sum()) > 0
    assert not (batch.det_vision_mask & batch.det_text_mask).any()
    assert not (batch.det_text_mask & (batch.span_ids > 0)).any()  # the answer never feeds the head

    head = model.detection_head
    target = {"boxes": box_xyxy_to_cxcywh(batch.det_boxes[0]), "caption_ids": batch.det_caption_ids[0]}
    labels = [o for o in run.train_dataset.sources[0].student.record.objects]
    assert len(labels) == len(target["boxes"]) >= 2
    embedding = head.token_embedding
    embedding.weight.requires_grad_(False)
    opt = torch.optim.Adam(head.parameters(), lr=2e-3)
    for step in range(1, 2001):  # stops as soon as every box, objectness and caption is right
        det = model.head_forward(embeds, hidden, batch)
        losses = model.criterion(det, [target], head)
        opt.zero_grad()
        losses["loss_detection"].backward()
        opt.step()
        if step % 25:
            continue
        with torch.no_grad():
            det = model.head_forward(embeds, hidden, batch)
            ((queries, objects),) = model.criterion.matcher(det.boxes, det.objectness_logits, [target])
            iou = box_iou(box_cxcywh_to_xyxy(det.boxes[0, queries]), box_cxcywh_to_xyxy(target["boxes"][objects])).diag()
            confident = (det.objectness_logits[0].sigmoid() > 0.5).nonzero().flatten()
            ids, _ = head.generate_captions(det.query_hidden[0, queries])
        captions = [tok.decode([t for t in row if t not in (head.eos_token_id, head.pad_token_id)]) for row in ids.tolist()]
        ok = (iou.min() >= 0.9 and sorted(confident.tolist()) == sorted(queries.tolist())
              and captions == [labels[j].desc for j in objects.tolist()])
        if ok:
            break
    assert iou.min() >= 0.9, (step, iou)
    assert sorted(confident.tolist()) == sorted(queries.tolist())
    assert captions == [labels[j].desc for j in objects.tolist()]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_non_finite_batch_reaches_every_parameter_a_healthy_one_does(run_config):
    # Under DDP (ddp_find_unused_parameters off) every rank waits for a gradient of every parameter: a rank whose batch
    # went non-finite and whose loss left a parameter out of its graph hung the run (model/detection_loss.py). Every
    # term is on, so that no shortcut of any of them goes unseen.
    run = build_run(run_config("loss.coordinate_regression=0.5", "loss.grounding_attention=0.5", "loss.number_token=0.5",
                               "data.teacher_ratio=1"))
    model = run.model
    model.train()
    batch = run.collator([run.train_dataset[i] for i in range(2)])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def reached(poison: str | None) -> tuple[set[str], torch.Tensor]:
        model.zero_grad(set_to_none=True)
        poisoned = dataclasses.replace(batch, pixel_values=batch.pixel_values * float("nan")) if poison == "pixels" else batch
        hook = model.detection_head.register_forward_hook(
            lambda m, i, out: dataclasses.replace(out, boxes=out.boxes * float("inf"))) if poison == "boxes" else None
        try:
            parts = model(poisoned)
        finally:
            if hook is not None:
                hook.remove()
        parts.loss.backward()
        return {n for n, p in model.named_parameters() if p.grad is not None}, parts.loss

    healthy, loss = reached(None)
    assert healthy == trainable and torch.isfinite(loss)
    for poison in ("pixels", "boxes"):
        got, loss = reached(poison)
        assert torch.isnan(loss), poison
        assert got == trainable, (poison, sorted(trainable - got)[:5])
