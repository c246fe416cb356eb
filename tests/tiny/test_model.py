"""The tiny offline builders (one per family) and their tokenizer: Qwen's format, token ids in sync, deterministic."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.families import FAMILIES, get_family
from bbuvl.data.labels import Hierarchy
from bbuvl.encode.positions import mrope_positions
from bbuvl.data.families import family_of
from bbuvl.model.loading import load_model_and_processor
from bbuvl.model.processor import Qwen2_5_VLImageOnlyProcessor, Qwen3VLImageOnlyProcessor
from bbuvl.tiny.configs import TinySizes, interleaved_mrope_section, layer_types, mrope_section, shape_problem
from bbuvl.tiny.model import build_tiny_model, count_saved_parameters
from bbuvl.tiny.tokenizer import EOS_TOKEN, PAD_TOKEN, QWEN_SPECIAL_TOKENS, THINK_TOKENS, train_tokenizer

ANSWER = '[{"bbox_2d": [12, 34, 56, 78], "label": "螺丝连接点/BBU安装螺丝/连接正确"}]'


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


FAMILY_NAMES = list(FAMILIES)
MODEL_CLASSES = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_5": "Qwen3_5ForConditionalGeneration",
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory, tiny_dir) -> dict[str, Path]:
    """One tiny checkpoint per family, seed 0 (the Qwen2.5-VL one is `tiny_dir`)."""
    root = tmp_path_factory.mktemp("families")
    dirs = {f: build_tiny_model(root / f, family=f) for f in FAMILY_NAMES if f != "qwen2_5_vl"}
    return {"qwen2_5_vl": tiny_dir, **dirs}


@pytest.fixture(scope="module")
def family_loaded(family_dirs) -> dict[str, tuple]:
    return {f: load_model_and_processor(str(d)) for f, d in family_dirs.items()}


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


def test_interleaved_mrope_section_gives_every_axis_its_turns_like_qwen3_5():
    assert interleaved_mrope_section(64) == [11, 11, 10]  # Qwen3.5: head_dim 256 x partial rotary 0.25
    assert interleaved_mrope_section(32) == [6, 5, 5]
    assert interleaved_mrope_section(8) == [2, 1, 1]
    with pytest.raises(ValueError, match="at least 6"):
        interleaved_mrope_section(4)


def test_layer_types_mix_linear_and_full_attention_ending_full():
    assert layer_types(2) == ["linear_attention", "full_attention"]
    assert layer_types(8) == ["linear_attention"] * 3 + ["full_attention"] + ["linear_attention"] * 3 + ["full_attention"]
    assert layer_types(5)[-1] == "full_attention"
    with pytest.raises(ValueError, match="at least 2 layers"):
        layer_types(1)


def test_mrope_section_splits_half_the_head_dim_like_the_3b():
    assert mrope_section(128) == [16, 24, 24]  # Qwen2.5-VL-3B
    assert mrope_section(32) == [4, 6, 6]
    assert sum(mrope_section(48)) == 24
    with pytest.raises(ValueError, match="even"):
        mrope_section(33)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
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


def test_unknown_family_is_an_error_listing_the_supported_ones(tmp_path):
    with pytest.raises(ValueError, match="supported: qwen2_5_vl"):
        build_tiny_model(tmp_path / "bad", family="llava")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_qwen3_5_needs_a_linear_and_a_full_attention_layer(tmp_path):
    with pytest.raises(ValueError, match="at least 2 layers"):
        build_tiny_model(tmp_path / "bad", family="qwen3_5", layers=1)


# ---- every family ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_each_family_saves_a_complete_checkpoint_of_its_real_architecture(family_dirs, family):
    folder = family_dirs[family]
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "chat_template.jinja"} <= names
    assert 500_000 < count_saved_parameters(folder) < 2_000_000
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == family and family_of(folder) is get_family(family)
    fam, vision, text = get_family(family), config["vision_config"], config["text_config"]
    assert (vision["patch_size"], vision["spatial_merge_size"], vision["temporal_patch_size"]) == (
        fam.patch_size, fam.merge_size, 2)
    rope = text["rope_parameters"]
    rotary = int(text["hidden_size"] // text["num_attention_heads"] * rope.get("partial_rotary_factor", 1.0))
    assert sum(rope["mrope_section"]) == rotary // 2
    if family != "qwen2_5_vl":
        assert rope["mrope_interleaved"] is True
        # The learned position grid covers the largest square photo of max_pixels.
        assert vision["num_position_embeddings"] >= (math.sqrt(50176) / 16) ** 2
    if family == "qwen3_vl":
        assert vision["deepstack_visual_indexes"] == [0]
    if family == "qwen3_5":
        assert {"linear_attention", "full_attention"} <= set(text["layer_types"])
        assert rope["partial_rotary_factor"] == 0.25
    stats = json.loads((folder / "processor_config.json").read_text())["image_processor"]
    assert stats["patch_size"] == fam.patch_size
    assert stats["image_mean"] == ([0.5] * 3 if family != "qwen2_5_vl" else pytest.approx([0.4815, 0.4578, 0.4082], abs=1e-4))


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
def test_each_family_build_is_deterministic_for_a_seed(family_dirs, family, tmp_path):
    again = build_tiny_model(tmp_path / "again", family=family)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "chat_template.jinja"):
        assert (again / name).read_bytes() == (family_dirs[family] / name).read_bytes(), name


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_each_family_reloads_through_the_one_loading_path(family_loaded, family):
    model, processor = family_loaded[family]
    assert type(model).__name__ == MODEL_CLASSES[family] and not model.training
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    expected = Qwen2_5_VLImageOnlyProcessor if family == "qwen2_5_vl" else Qwen3VLImageOnlyProcessor
    assert isinstance(processor, expected)
    # The loaded tokenizer (Qwen3.5's own class for qwen3_5) encodes exactly like the one the build trained.
    built = train_tokenizer(family=family)
    text = "<|im_start|>assistant\n<think>\n\n</think>\n\n" + ANSWER + "<|im_end|>"
    assert processor.tokenizer(text)["input_ids"] == built(text)["input_ids"]
    assert len(processor.tokenizer) == model.config.get_text_config().vocab_size


@pytest.mark.parametrize(("family", "grid"), [("qwen2_5_vl", [1, 16, 16]), ("qwen3_vl", [1, 14, 14]), ("qwen3_5", [1, 14, 14])])
def test_a_224_photo_gives_the_familys_patch_grid_and_vision_tokens(family_loaded, family, grid):
    model, processor = family_loaded[family]
    patch = get_family(family).patch_size
    out = processor(images=[Image.new("RGB", (224, 224), (200, 30, 30))],
                    text=["<|vision_start|><|image_pad|><|vision_end|>找"], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [grid]
    assert out["pixel_values"].shape == (grid[1] * grid[2], 3 * 2 * patch * patch)
    is_image = out["input_ids"][0] == model.config.image_token_id
    assert int(is_image.sum()) == grid[1] * grid[2] // 4
    assert torch.equal(out["mm_token_type_ids"][0], is_image.long())


def _two_image_batch(processor):
    """A rendered conversation with a teacher photo and a student photo of different shapes."""
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    text = f"<|im_start|>user\n{image}示例<|im_end|>\n<|im_start|>assistant\n{ANSWER}<|im_end|>\n<|im_start|>user\n{image}找"
    photos = [Image.new("RGB", (224, 224), (200, 30, 30)), Image.new("RGB", (300, 180), (30, 200, 30))]
    return processor(images=photos, text=[text], return_tensors="pt")


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_each_family_forwards_with_hidden_states_and_generates(family_loaded, family):
    model, processor = family_loaded[family]
    batch = _two_image_batch(processor)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.logits).all()
    assert len(out.hidden_states) == model.config.get_text_config().num_hidden_layers + 1
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "找出所有目标"}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(images=[Image.new("RGB", (224, 224))], text=[prompt], return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert inputs["input_ids"].shape[1] < generated.shape[1] <= inputs["input_ids"].shape[1] + 3


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_mrope_positions_equal_each_familys_own_rope_index(family_loaded, family):
    model, processor = family_loaded[family]
    batch = _two_image_batch(processor)
    assert len(batch["image_grid_thw"]) == 2
    ref, _ = model.model.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"],
                                        image_grid_thw=batch["image_grid_thw"], attention_mask=batch["attention_mask"])
    ours = mrope_positions(batch["input_ids"][0], batch["image_grid_thw"], model.config.image_token_id)
    assert torch.equal(ref[:, 0], ours)


def _render(tokenizer, messages, **kwargs) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def test_qwen3_vl_template_is_qwen2_5_vls_without_the_default_system_turn():
    q25, q3 = train_tokenizer(), train_tokenizer(family="qwen3_vl")
    user = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "找出所有目标"}]}]
    default_system = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    assert _render(q25, user, add_generation_prompt=True) == default_system + _render(q3, user, add_generation_prompt=True)
    with_system = [{"role": "system", "content": "你是巡检员。"}, *user, {"role": "assistant", "content": ANSWER}]
    assert _render(q25, with_system) == _render(q3, with_system)


def test_qwen3_5_template_writes_an_empty_think_block_before_the_final_answer_only():
    tokenizer = train_tokenizer(family="qwen3_5")
    prefix = get_family("qwen3_5").assistant_prefix
    teacher = [{"role": "user", "content": [{"type": "image"}]}, {"role": "assistant", "content": "[]"}]
    student = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "找"}]},
               {"role": "assistant", "content": ANSWER}]
    text = _render(tokenizer, [{"role": "system", "content": "S"}, *teacher, *student])
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n[]<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>找<|im_end|>\n"
        f"<|im_start|>assistant\n{prefix}{ANSWER}<|im_end|>\n"
    )
    prompt = _render(tokenizer, student[:1], add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n" + prefix)
    assert _render(tokenizer, student[:1], add_generation_prompt=True, enable_thinking=False) == prompt
    assert _render(tokenizer, student[:1], add_generation_prompt=True, enable_thinking=True).endswith("assistant\n<think>\n")
    # Think tags are single ordinary tokens, as in Qwen3's vocabulary.
    assert tokenizer.tokenize(prefix) == ["<think>", "Ċ", "Ċ", "</think>", "Ċ", "Ċ"]
    assert tokenizer.convert_tokens_to_ids(list(THINK_TOKENS)) == [len(tokenizer) - 2, len(tokenizer) - 1]


def test_cli_builds_each_family(tmp_path):
    result = CliRunner().invoke(app, ["model", "tiny", str(tmp_path / "q35"), "--family", "qwen3_5"])
    assert result.exit_code == 0, result.output
    assert "tiny Qwen3.5" in result.output and family_of(tmp_path / "q35").model_type == "qwen3_5"
    bad = CliRunner().invoke(app, ["model", "tiny", str(tmp_path / "bad"), "--family", "qwen9"])
    assert bad.exit_code == 2 and "supported" in bad.output


def test_sizes_no_model_takes_are_named_in_the_callers_words():
    # One rule, two wordings: the builder's arguments, or the options `bbuvl model tiny` was typed with.
    assert shape_problem(128, 4, 2, 64, 4) is None
    assert shape_problem(130, 4, 2, 65, 4) == ("hidden 130 must divide by heads 4, and heads by kv_heads 2; "
                                               "vision_hidden 65 must divide by vision_heads 4")
    cli = shape_problem(128, 4, 3, 64, 4, name=lambda a: "--" + a.replace("_", "-"))
    assert cli == "--hidden 128 must divide by --heads 4, and --heads by --kv-heads 3"
    with pytest.raises(ValueError, match="hidden 130 must divide by heads 4"):
        TinySizes(130, 2, 4, 2, 2, 64, 4)
