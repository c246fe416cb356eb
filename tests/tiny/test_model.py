"""The tiny offline Qwen2.5-VL builder and its tokenizer: Qwen's format, token ids in sync, deterministic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bbuvl.data.labels import Hierarchy
from bbuvl.tiny.model import build_tiny_model, count_saved_parameters, mrope_section
from bbuvl.tiny.tokenizer import EOS_TOKEN, PAD_TOKEN, QWEN_SPECIAL_TOKENS, train_tokenizer

ANSWER = '[{"bbox_2d": [12, 34, 56, 78], "label": "螺丝连接点/BBU安装螺丝/连接正确"}]'


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "ckpt")


def test_tokenizer_round_trips_every_label_and_bbox_json_exactly(tokenizer):
    hierarchy = Hierarchy.load()
    texts = [ANSWER, "[]", "```json\n" + ANSWER + "\n```", *hierarchy.labels()]
    texts += [hierarchy.english(label) for label in hierarchy.labels()]
    texts += [cat.cue_zh for cat in hierarchy.categories.values()]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_unseen_text_round_trips_through_bytes(tokenizer):
    text = "未见过的字：龘 emoji 🙂 and tabs\tand\r\nnewlines"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_digits_are_split_one_per_token(tokenizer):
    tokens = tokenizer.tokenize('"label": "x", "bbox": [1234, 567890, 0, 99]')
    with_digits = [t for t in tokens if any(c.isdigit() for c in t)]
    assert with_digits == list("1234567890099")


def test_special_tokens_follow_the_learned_vocab_in_qwen_order(tokenizer):
    ids = tokenizer.convert_tokens_to_ids(list(QWEN_SPECIAL_TOKENS))
    first = ids[0]
    assert ids == list(range(first, first + len(QWEN_SPECIAL_TOKENS)))
    assert first + len(QWEN_SPECIAL_TOKENS) == len(tokenizer)
    assert tokenizer.eos_token == EOS_TOKEN and tokenizer.pad_token == PAD_TOKEN
    # Special tokens are never split, even inside text.
    assert tokenizer.tokenize("a<|image_pad|><|image_pad|>b") == ["a", "<|image_pad|>", "<|image_pad|>", "b"]


def test_vocab_is_small_and_training_is_fast_and_deterministic():
    start = time.perf_counter()
    first = train_tokenizer()
    elapsed = time.perf_counter() - start
    second = train_tokenizer()
    assert elapsed < 5.0
    assert 1000 < len(first) <= 3000 + len(QWEN_SPECIAL_TOKENS)
    assert first.get_vocab() == second.get_vocab()
    assert first.tokenize(ANSWER) == second.tokenize(ANSWER)


def test_chat_template_renders_qwen_turns_and_images(tokenizer):
    messages = [
        {"role": "system", "content": "你是巡检员。"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "找出所有目标"}]},
        {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == (
        "<|im_start|>system\n你是巡检员。<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>找出所有目标<|im_end|>\n"
        f"<|im_start|>assistant\n{ANSWER}<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(messages[1:2], tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_saved_folder_is_a_complete_checkpoint(tiny_dir):
    names = {p.name for p in tiny_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert {"processor_config.json", "chat_template.jinja"} <= names
    assert 500_000 < count_saved_parameters(tiny_dir) < 2_000_000


def test_config_matches_tokenizer_and_real_architecture(tiny_dir, tokenizer):
    config = json.loads((tiny_dir / "config.json").read_text())
    text = config["text_config"]
    assert config["model_type"] == "qwen2_5_vl" and config["tie_word_embeddings"] is True
    assert text["vocab_size"] == len(tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    assert config["image_token_id"] == ids("<|image_pad|>")
    assert config["video_token_id"] == ids("<|video_pad|>")
    assert config["vision_start_token_id"] == ids("<|vision_start|>")
    assert config["vision_end_token_id"] == ids("<|vision_end|>")
    assert text["eos_token_id"] == ids(EOS_TOKEN) and text["pad_token_id"] == ids(PAD_TOKEN)
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    assert sum(text["rope_parameters"]["mrope_section"]) == head_dim // 2
    vision = config["vision_config"]
    assert (vision["patch_size"], vision["spatial_merge_size"], vision["temporal_patch_size"]) == (14, 2, 2)
    assert vision["out_hidden_size"] == text["hidden_size"]
    processor = json.loads((tiny_dir / "processor_config.json").read_text())
    assert processor["image_processor"]["size"] == {"shortest_edge": 12544, "longest_edge": 50176}


def test_mrope_section_splits_half_the_head_dim_like_the_3b():
    assert mrope_section(128) == [16, 24, 24]  # Qwen2.5-VL-3B
    assert mrope_section(32) == [4, 6, 6]
    assert sum(mrope_section(48)) == 24
    with pytest.raises(ValueError, match="even"):
        mrope_section(33)


def test_build_is_deterministic_for_a_seed(tmp_path, tiny_dir):
    again = build_tiny_model(tmp_path / "again")
    other = build_tiny_model(tmp_path / "other", seed=1)
    weights = (tiny_dir / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == weights
    assert (again / "tokenizer.json").read_bytes() == (tiny_dir / "tokenizer.json").read_bytes()
    assert (other / "model.safetensors").read_bytes() != weights


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heads": 3}, "must divide"),
        ({"kv_heads": 3}, "must divide"),
        ({"vision_heads": 5}, "vision_hidden"),
        ({"min_pixels": 90000}, "must not exceed"),
    ],
)
def test_build_rejects_inconsistent_sizes(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_model(tmp_path / "bad", **kwargs)
