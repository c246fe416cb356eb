"""`ImageResult.prompt_tokens` / `completion_tokens`: what the model read and wrote for a photo, as `bbuvl predict`
computes it (photos encoded in the batch, not ahead as the server encodes them), against the stock processor's
prompt for the same conversation."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from bbuvl.encode.prompts import USER_TEXT


def processor_prompt_tokens(predictor, images: list[Image.Image], answers: list[str]) -> int:
    """Tokens of the conversation the stock processor builds: the system prompt, then one user turn per image, each
    answered by its `answers` but the last, which ends at the assistant's header."""
    messages = [{"role": "system", "content": [{"type": "text", "text": predictor.prompt.system}]}]
    for i, _ in enumerate(images):
        messages.append({"role": "user", "content": [{"type": "image"},
                                                     {"type": "text", "text": USER_TEXT[predictor.prompt.lang]}]})
        if i < len(answers):
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answers[i]}]})
    text = predictor.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                   enable_thinking=False)
    return predictor.processor(text=[text], images=images, return_tensors="pt")["input_ids"].shape[1]


def test_head_and_generate_count_the_prompt_the_processor_builds(predictor, photos):
    expected = processor_prompt_tokens(predictor, [Image.open(photos[0]).convert("RGB")], [])
    head, = predictor.predict([photos[0]], "head")
    assert (head.prompt_tokens, head.completion_tokens) == (expected, 0)
    # unconstrained, the tiny model writes to the budget: every token of it, none of them a stop
    generated, = predictor.predict([photos[0]], "generate", constrained=False, max_new_tokens=7)
    assert (generated.prompt_tokens, generated.completion_tokens, generated.cut) == (expected, 7, True)


def test_teachers_mode_counts_the_teachers_turns_it_read(predictor, photos, small_dataset):
    predictor.set_teachers(small_dataset / "teachers.jsonl", k=2)
    try:
        result, = predictor.predict([photos[1]], "teachers")
        shown, answers = [image for image, _ in predictor.teachers], [answer for _, answer in predictor.teachers]
    finally:
        predictor.teachers = []
    expected = processor_prompt_tokens(predictor, [*shown, Image.open(photos[1]).convert("RGB")], answers)
    assert len(shown) == 2 and result.prompt_tokens == expected
    assert result.prompt_tokens > processor_prompt_tokens(predictor, [Image.open(photos[1]).convert("RGB")], [])


def test_a_teacher_photo_that_cannot_be_read_is_named_with_its_file_and_line(predictor, small_dataset, tmp_path):
    rows = (small_dataset / "teachers.jsonl").read_text(encoding="utf-8").splitlines()
    teachers = tmp_path / "teachers.jsonl"
    (tmp_path / "images").mkdir()
    first = json.loads(rows[0])
    shutil.copy(small_dataset / first["images"][0], tmp_path / first["images"][0])
    gone = json.loads(rows[1]) | {"images": ["images/gone.png"]}
    teachers.write_text(f"{json.dumps(first)}\n\n{json.dumps(gone)}\n", encoding="utf-8")
    with pytest.raises(ValueError) as e:
        predictor.set_teachers(teachers, k=2)
    assert str(e.value) == f"{teachers}:3: teacher images/gone.png: image file not found"
    assert predictor.teachers == []  # none kept of a file that failed half-way
