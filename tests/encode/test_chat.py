"""Conversations: answers in the model frame, loss only on assistant answers, spans, same ids as the chat template."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.families import get_family
from bbuvl.data.labels import Hierarchy
from bbuvl.data.schema import ImageRecord, ObjectAnn
from bbuvl.encode.chat import IGNORE_INDEX, SPAN_NONE, SPAN_STUDENT, SPAN_TEACHER, ChatEncoder, Turn, format_answer
from bbuvl.encode.prompts import system_prompt
from bbuvl.model.lm_loss import span_lm_loss

LABELS = ["螺丝连接点/BBU安装螺丝/连接正确", "标签贴纸", "bbu基带处理单元/华为"]


def _img(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def encoder(tiny, tiny_family):
    return ChatEncoder(tiny[1], system_prompt(LABELS, Hierarchy.load(), "zh"), "zh", get_family(tiny_family).assistant_prefix)


def test_system_prompt_lists_exactly_the_data_labels():
    zh = system_prompt(LABELS, Hierarchy.load(), "zh")
    en = system_prompt(LABELS, Hierarchy.load(), "en")
    for label in LABELS:
        assert label in zh and label in en
    assert "螺丝连接点/CPRI光缆和BBU连接点/连接正确" not in zh  # nothing the data does not use
    assert "JSON" in zh and "bbox_2d" in en


def test_answer_is_model_frame_json_sorted_by_y_then_x():
    rec = ImageRecord(images=["a.jpg"], width=448, height=336, objects=[
        ObjectAnn(bbox_2d=[200, 100, 300, 200], desc="标签贴纸"),
        ObjectAnn(bbox_2d=[10, 20, 50, 60], desc="线缆"),
        ObjectAnn(bbox_2d=[100, 100, 150, 150], desc="线缆"),
    ])
    c = CoordinateContract(12544, 50176)
    ans = json.loads(format_answer(rec, c))
    assert [o["label"] for o in ans] == ["线缆", "线缆", "标签贴纸"]
    assert ans[0]["bbox_2d"] == c.to_model([10, 20, 50, 60], (448, 336))
    assert format_answer(rec.model_copy(update={"objects": []}), c) == "[]"


def test_labels_mask_everything_but_assistant_answers(encoder, tiny):
    tok = tiny[1].tokenizer
    turns = [Turn(_img(56, 56, 1), '[{"bbox_2d": [1, 2, 3, 4], "label": "标签贴纸"}]', SPAN_TEACHER),
             Turn(_img(84, 56, 2), "[]", SPAN_STUDENT)]
    enc = encoder.encode(turns)
    sup = enc.labels != IGNORE_INDEX
    assert torch.equal(sup, enc.span_ids != SPAN_NONE)
    # the supervised tokens are exactly each answer followed by <|im_end|>
    teacher_text = tok.decode(enc.input_ids[enc.span_ids == SPAN_TEACHER])
    student_text = tok.decode(enc.input_ids[enc.span_ids == SPAN_STUDENT])
    assert teacher_text == turns[0].answer + "<|im_end|>"
    assert student_text == "[]<|im_end|>"
    # image pads: the processor's count, nothing between them
    pad = tok.convert_tokens_to_ids("<|image_pad|>")
    assert enc.num_vision_tokens == int(enc.image_grid_thw.prod(-1).sum()) // 4
    pos = torch.nonzero(enc.input_ids == pad).flatten()
    assert (pos.diff() == 1).sum() == len(pos) - 2  # two contiguous blocks


def test_same_ids_as_the_chat_template(encoder, tiny, tiny_family):
    """Turn-by-turn tokenisation renders exactly what the processor's chat template renders."""
    processor = tiny[1]
    factor = get_family(tiny_family).factor
    image = _img(6 * factor, 4 * factor, 3)  # already a model-frame size within the processor's pixel range
    answer = '[{"bbox_2d": [10, 20, 30, 40], "label": "螺丝连接点/BBU安装螺丝/连接正确"}]'
    ours = encoder.encode([Turn(image, answer, SPAN_STUDENT)])
    messages = [
        {"role": "system", "content": [{"type": "text", "text": encoder.system_prompt}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": encoder.user_text}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    ref = processor(text=[text], images=[image], return_tensors="pt")
    assert torch.equal(ref["input_ids"][0], ours.input_ids)
    assert torch.equal(ref["image_grid_thw"], ours.image_grid_thw)
    assert torch.allclose(ref["pixel_values"], ours.pixel_values)


def test_generation_prompt_ends_at_assistant_header(encoder, tiny):
    enc = encoder.encode([Turn(_img(56, 56), None, SPAN_STUDENT)], add_generation_prompt=True)
    assert tiny[1].tokenizer.decode(enc.input_ids[-20:]).endswith("<|im_start|>assistant\n" + encoder.assistant_prefix)
    assert (enc.labels == IGNORE_INDEX).all()


def test_span_losses_equal_independent_cross_entropy(encoder, tiny):
    model, _ = tiny
    turns = [Turn(_img(56, 56, 4), '[{"bbox_2d": [1, 2, 3, 4], "label": "线缆"}]', SPAN_TEACHER),
             Turn(_img(56, 84, 5), '[{"bbox_2d": [5, 6, 7, 8], "label": "标签贴纸"}]', SPAN_STUDENT)]
    enc = encoder.encode(turns)
    with torch.no_grad():
        out = model(input_ids=enc.input_ids[None], pixel_values=enc.pixel_values, image_grid_thw=enc.image_grid_thw,
                    mm_token_type_ids=enc.mm_token_type_ids[None], output_hidden_states=True, use_cache=False)
        got = span_lm_loss(out.hidden_states[-1], model.lm_head, enc.labels[None], enc.span_ids[None])
    logits = out.logits[0, :-1]
    target, span = enc.input_ids[1:], enc.span_ids[1:]
    for s, value, n in ((SPAN_TEACHER, got.teacher, got.n_teacher), (SPAN_STUDENT, got.student, got.n_student)):
        m = span == s
        ref = F.cross_entropy(logits[m], target[m])
        assert n == int(m.sum()) > 0
        assert torch.allclose(value, ref, atol=1e-5)
