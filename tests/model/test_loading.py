"""The one loading path on the tiny checkpoint: processor output, mRoPE, forward, generate, token-id checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen3_5Config, Qwen3VLConfig
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

from bbuvl.data.coords import CoordinateContract
from bbuvl.data.families import family_of
from bbuvl.model.loading import (
    SpecialTokenMismatch,
    VisionGridMismatch,
    _image_only_class,
    check_special_tokens,
    load_model_and_processor,
    load_processor,
    special_token_ids,
)
from bbuvl.model.processor import Qwen2_5_VLImageOnlyProcessor, Qwen3VLImageOnlyProcessor, pixel_range
from bbuvl.tiny.model import build_tiny_model

ANSWER = '[{"bbox_2d": [12, 34, 56, 78], "label": "螺丝连接点/BBU安装螺丝/连接正确"}]'


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="module")
def loaded(tiny_dir):
    return load_model_and_processor(str(tiny_dir))


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (224, 224), (200, 30, 30)), Image.new("RGB", (300, 180), (30, 200, 30))]


def _two_image_chat(processor) -> str:
    messages = [
        {"role": "system", "content": "你是巡检员。"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "示例"}]},
        {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "找出所有目标"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "[]"}]},
    ]
    return processor.apply_chat_template(messages, tokenize=False)


@pytest.fixture(scope="module")
def batch(loaded):
    _, processor = loaded
    return processor(images=_images(), text=[_two_image_chat(processor)], return_tensors="pt")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_loader_returns_the_image_only_processor_and_an_eval_model(loaded):
    model, processor = loaded
    assert isinstance(processor, Qwen2_5_VLImageOnlyProcessor)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert not model.training
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied, like the 3B
    assert processor.chat_template and pixel_range(processor) == (12544, 50176)


def test_a_saved_folder_names_the_stock_processor_which_stock_autoprocessor_builds_where_torchvision_imports(tiny_dir):
    from transformers.utils import is_torchvision_available
    from transformers.video_processing_utils import BaseVideoProcessor

    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        assert json.loads((tiny_dir / name).read_text())["processor_class"] == "Qwen2_5_VLProcessor", name
    # What the stock processor's video processor reads its settings from: present, so torchvision is all it lacks here.
    video, _ = BaseVideoProcessor.get_video_processor_dict(str(tiny_dir))
    assert video["patch_size"] == 14 and video["merge_size"] == 2
    if is_torchvision_available():
        processor = AutoProcessor.from_pretrained(str(tiny_dir))
        assert type(processor).__name__ == "Qwen2_5_VLProcessor" and processor.image_processor is not None
    else:
        with pytest.raises(ImportError, match="(?i)torchvision"):
            AutoProcessor.from_pretrained(str(tiny_dir))
        assert isinstance(load_processor(str(tiny_dir)), Qwen2_5_VLImageOnlyProcessor)  # bbu-vl's stand-in


def test_image_pad_count_matches_grid_for_images_of_different_sizes(loaded, batch):
    model, processor = loaded
    grid = batch["image_grid_thw"]
    assert grid.tolist() == [[1, 16, 16], [1, 12, 20]]
    is_image = batch["input_ids"][0] == model.config.image_token_id
    assert int(is_image.sum()) == int((grid.prod(-1) // 4).sum())
    assert batch["pixel_values"].shape == (int(grid.prod(-1).sum()), 3 * 2 * 14 * 14)
    assert torch.equal(batch["mm_token_type_ids"][0], is_image.long())
    # Each image's pads sit right between its vision start and end, nothing in between.
    text = processor.tokenizer.decode(batch["input_ids"][0])
    for n in (grid.prod(-1) // 4).tolist():
        assert "<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>" in text


def test_forward_with_labels_gives_a_finite_loss_on_a_padded_batch(loaded):
    model, processor = loaded
    one_image = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "找"}]}]
    texts = [_two_image_chat(processor), processor.apply_chat_template(one_image, tokenize=False)]
    images = [*_images(), Image.new("RGB", (100, 400))]
    batch = processor(images=images, text=texts, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        out = model(**batch, labels=labels)
    assert out.logits.shape[:2] == batch["input_ids"].shape
    assert torch.isfinite(out.loss) and out.loss > 0


def test_generate_runs_with_vision_inputs(loaded):
    model, processor = loaded
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "找出所有目标"}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(images=_images()[:1], text=[prompt], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 1 and inputs["input_ids"].shape[1] < out.shape[1] <= inputs["input_ids"].shape[1] + 4


def test_image_tokens_get_3d_mrope_positions(loaded, batch):
    model, _ = loaded
    positions, _ = model.model.get_rope_index(
        batch["input_ids"],
        batch["mm_token_type_ids"],
        image_grid_thw=batch["image_grid_thw"],
        attention_mask=batch["attention_mask"],
    )
    assert positions.shape == (3, 1, batch["input_ids"].shape[1])
    is_image = batch["input_ids"][0] == model.config.image_token_id
    per_image = positions[:, 0, is_image].split((batch["image_grid_thw"].prod(-1) // 4).tolist(), dim=1)
    for (t, h, w), (_, grid_h, grid_w) in zip(per_image, batch["image_grid_thw"].tolist()):
        # One temporal position; the merged grid's rows on the h axis and columns on the w axis.
        assert t.unique().numel() == 1
        assert h.unique().numel() == grid_h // 2 and w.unique().numel() == grid_w // 2
    text = positions[:, 0, ~is_image]
    assert torch.equal(text[0], text[1]) and torch.equal(text[1], text[2])


def test_dropping_mm_token_type_ids_changes_the_logits(loaded, batch):
    model, _ = loaded
    without = {k: v for k, v in batch.items() if k != "mm_token_type_ids"}
    with torch.no_grad():
        mrope = model(**batch).logits
        flat = model(**without).logits
    # Without the type ids the model falls back to 1-D positions on every axis: a silent, real difference.
    assert not torch.allclose(mrope, flat)


def test_the_frame_overrides_the_image_processor(tiny_dir):
    processor = load_processor(str(tiny_dir), CoordinateContract(min_pixels=3136, max_pixels=28 * 28 * 16))
    assert pixel_range(processor) == (3136, 12544)
    out = processor(images=_images()[:1], text=["<|vision_start|><|image_pad|><|vision_end|>"], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 8, 8]]
    with pytest.raises(ValueError, match="must not exceed"):
        load_processor(str(tiny_dir), CoordinateContract(min_pixels=10**6, max_pixels=28 * 28 * 16))


def test_without_torchvision_a_folder_naming_a_stock_processor_is_read_once_by_its_stand_in(tiny_dir, tmp_path,
                                                                                            monkeypatch):
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        pytest.skip("torchvision imports here: AutoProcessor builds the stock processor")
    stock = _as_stock_checkpoint(tiny_dir, tmp_path / "stock")

    def asked(*args, **kwargs):
        raise AssertionError("AutoProcessor was asked")

    # Before: AutoProcessor read the tokenizer and the image processor, failed on the video processor, and the
    # stand-in read both again, half the time of each load
    monkeypatch.setattr(AutoProcessor, "from_pretrained", asked)
    for folder in (tiny_dir, stock):  # bbu-vl's saved folder and a stock one name the stock class
        assert isinstance(load_processor(str(folder)), Qwen2_5_VLImageOnlyProcessor)


def test_stock_qwen_processor_files_load(tiny_dir, tmp_path):
    stock = _as_stock_checkpoint(tiny_dir, tmp_path / "stock")
    model, processor = load_model_and_processor(str(stock))
    assert pixel_range(processor) == (3136, 12845056)
    assert processor.chat_template and "<|vision_start|><|image_pad|><|vision_end|>" in processor.chat_template
    out = processor(images=_images()[1:], text=["<|vision_start|><|image_pad|><|vision_end|>"], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 12, 22]] and "mm_token_type_ids" in out


QWEN2_5_VL_PREPROCESSOR = {  # as Qwen2.5-VL-3B-Instruct ships it
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
}
QWEN3_VL_PREPROCESSOR = {  # as Qwen3-VL-4B-Instruct and Qwen3.5 ship it
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "image_processor_type": "Qwen2VLImageProcessorFast",
    "processor_class": "Qwen3VLProcessor",
}


def _as_stock_checkpoint(src: Path, dst: Path, preprocessor: dict = QWEN2_5_VL_PREPROCESSOR) -> Path:
    """Rewrite our folder's processor files the way the family's Instruct checkpoints ship them."""
    shutil.copytree(src, dst)
    (dst / "processor_config.json").unlink()
    (dst / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    template = (dst / "chat_template.jinja").read_text()
    (dst / "chat_template.jinja").unlink()
    (dst / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    tokenizer_config = json.loads((dst / "tokenizer_config.json").read_text())
    tokenizer_config["processor_class"] = preprocessor["processor_class"]
    (dst / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return dst


def test_folder_without_image_processor_config_is_an_error_naming_the_file(tiny_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_dir, bare)
    (bare / "processor_config.json").unlink()
    (bare / "preprocessor_config.json").unlink()
    with pytest.raises((OSError, ValueError), match="preprocessor_config.json"):
        load_processor(str(bare))


def test_special_token_ids_are_the_configs(loaded):
    model, processor = loaded
    ids = special_token_ids(processor)
    assert ids["image_token_id"] == model.config.image_token_id
    assert ids["vision_start_token_id"] == model.config.vision_start_token_id
    assert ids["vision_end_token_id"] == model.config.vision_end_token_id
    assert ids["video_token_id"] == model.config.video_token_id
    assert processor.tokenizer.convert_ids_to_tokens([ids["eos_token_id"], ids["pad_token_id"]]) == [
        "<|im_end|>",
        "<|endoftext|>",
    ]


def test_config_tokenizer_mismatch_is_an_error_naming_both_ids(tiny_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    right = config["image_token_id"]
    config["image_token_id"] = right - 1
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(SpecialTokenMismatch, match=rf"image_token_id={right - 1}.*<\|image_pad\|>={right}"):
        load_model_and_processor(str(broken))


@pytest.mark.parametrize("key, value, said", [
    ("patch_size", 16, "patch_size 16 where its vision_config has patch_size 14"),
    ("merge_size", 1, "merge_size 1 where its vision_config has spatial_merge_size 2"),
], ids=["another model's patches", "another merge"])
def test_an_image_processor_of_another_grid_than_the_vision_tower_is_refused_naming_both_files(tiny_dir, tmp_path, key,
                                                                                               value, said):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    for name in ("preprocessor_config.json", "processor_config.json"):  # as a Qwen3-VL's processor files copied in
        saved = json.loads((broken / name).read_text())
        settings = saved.get("image_processor", saved)
        if key in settings:
            settings[key] = value
        (broken / name).write_text(json.dumps(saved))
    # Before: it loaded, and every photo then failed alone ("shape '[-1, 3, 2, 14, 14]' is invalid for input of size
    # 258048"), naming no file
    with pytest.raises(VisionGridMismatch, match=rf"^{broken / 'preprocessor_config.json'}: the image processor has "
                                                 rf"{said} \({broken / 'config.json'}\)"):
        load_model_and_processor(str(broken))


def test_tokenizer_larger_than_the_embedding_is_an_error(loaded):
    model, processor = loaded
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.text_config.vocab_size = len(processor.tokenizer) - 1
    with pytest.raises(SpecialTokenMismatch, match="embeds only"):
        check_special_tokens(config, processor)


def test_dtype_is_applied_and_unknown_dtypes_are_rejected(tiny_dir):
    model, _ = load_model_and_processor(str(tiny_dir), dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model_and_processor(str(tiny_dir), dtype="float64")


# ---- the Qwen3 families ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen3_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qwen3")
    return {f: build_tiny_model(root / f, family=f) for f in ("qwen3_vl", "qwen3_5")}


def test_family_of_reads_config_json_never_the_folder_name(tiny_dir, tmp_path):
    misleading = tmp_path / "qwen3-vl-finetuned"
    shutil.copytree(tiny_dir, misleading)
    assert family_of(misleading).model_type == "qwen2_5_vl"


def test_unsupported_model_type_is_an_error_listing_the_supported_ones(tiny_dir, tmp_path):
    other = tmp_path / "gpt2"
    shutil.copytree(tiny_dir, other)
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match=r"'gpt2' is not a model family.*qwen2_5_vl.*qwen3_vl.*qwen3_5"):
        family_of(other)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_qwen3_families_load_with_the_image_only_processor_and_checked_tokens(qwen3_dirs, family):
    model, processor = load_model_and_processor(str(qwen3_dirs[family]))
    assert isinstance(processor, Qwen3VLImageOnlyProcessor) and family_of(qwen3_dirs[family]).model_type == family
    out = processor(images=_images()[1:], text=["<|vision_start|><|image_pad|><|vision_end|>"], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 10, 18]] and "mm_token_type_ids" in out
    assert special_token_ids(processor)["image_token_id"] == model.config.image_token_id


@pytest.mark.parametrize("config_class", [Qwen3VLConfig, Qwen3_5Config])
def test_autoprocessor_knows_the_qwen3_image_only_processor(config_class):
    if PROCESSOR_MAPPING[Qwen2_5_VLConfig] is not Qwen2_5_VLImageOnlyProcessor:
        pytest.skip("this transformers ignores AutoProcessor.register for built-in configs; load_processor covers it")
    assert PROCESSOR_MAPPING[config_class] is Qwen3VLImageOnlyProcessor


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
def test_stock_qwen3_processor_files_load_without_torchvision(qwen3_dirs, family, tmp_path):
    # Stock checkpoints name Qwen3VLProcessor, whose video processor needs torchvision: the family's fallback loads.
    stock = _as_stock_checkpoint(qwen3_dirs[family], tmp_path / "stock", QWEN3_VL_PREPROCESSOR)
    processor = load_processor(str(stock))
    assert isinstance(processor, Qwen3VLImageOnlyProcessor)
    assert pixel_range(processor) == (65536, 16777216)
    out = processor(images=_images()[:1], text=["<|vision_start|><|image_pad|><|vision_end|>"], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 16, 16]]  # 224x224 grows to 256x256 (65,536 pixels at least)


def test_adapter_folder_without_config_json_loads_the_processor_it_was_saved_with(qwen3_dirs, tmp_path):
    # A LoRA checkpoint saves the processor beside its adapter but no config.json.
    adapter = tmp_path / "adapter"
    shutil.copytree(qwen3_dirs["qwen3_vl"], adapter)
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        (adapter / name).unlink()
    assert isinstance(load_processor(str(adapter)), Qwen3VLImageOnlyProcessor)
    # transformers 5.17 cannot resolve the class through AutoProcessor; the fallback reads the saved class name.
    assert _image_only_class(str(adapter)) is Qwen3VLImageOnlyProcessor


@pytest.mark.parametrize("load", [load_processor, load_model_and_processor], ids=["processor", "model"])
def test_a_hub_id_that_cannot_be_loaded_is_named_with_what_to_give_instead(load, monkeypatch, tmp_path) -> None:
    """The hub library's own message ("We couldn't connect to 'https://huggingface.co' ...") named no model and did not
    say the name was read as a hub id because no folder has it (a mistyped model.path)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError) as e:
        load("nosuchorg/nosuchmodel")
    assert str(e.value).startswith("nosuchorg/nosuchmodel: no local folder of that name, and its processor could not "
                                   "be loaded as a Hugging Face hub id (")
    assert str(e.value).endswith("); give a local model folder")


def _closed_port() -> int:
    """A localhost port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("load", [load_processor, family_of], ids=["processor", "family"])
def test_a_hub_that_cannot_be_reached_is_said_at_once(load, monkeypatch, tmp_path) -> None:
    """A hub id not in the cache, with the hub unreachable: one question, then a clear error; loading retried every file
    for about 2.5 minutes first and named no model."""
    import time

    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read once, as the library was imported
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.chdir(tmp_path)
    t0 = time.monotonic()
    with pytest.raises((OSError, ValueError)) as e:
        load("nosuchorg/nosuchmodel")
    assert time.monotonic() - t0 < 10
    assert "nosuchorg/nosuchmodel" in str(e.value)
    assert "the Hugging Face hub cannot be reached (ConnectError" in str(e.value), str(e.value)


def _set_text(key: str, change):
    """An edit of config.json's text_config[key] (the tiny model nests its language model's sizes there)."""
    def edit(config: dict) -> None:
        config["text_config"][key] = change(config["text_config"][key])
    return edit


CONFIG_EDITS = [
    ("another family", lambda c: c.__setitem__("model_type", "qwen3_vl"), "are not in its weight files"),
    ("fewer layers", lambda c: c["text_config"].update(num_hidden_layers=1, layer_types=["full_attention"]),
     "are not in the model its config.json builds"),
    ("a larger vocabulary", _set_text("vocab_size", lambda n: n + 64), "another shape than its config.json builds"),
]


def _with_config_edited(tiny_dir: Path, folder: Path, edit) -> Path:
    """A copy of the tiny model at `folder` whose config.json `edit` changed in place."""
    shutil.copytree(tiny_dir, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    edit(config)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.mark.parametrize(("edit", "says"), [c[1:] for c in CONFIG_EDITS], ids=[c[0] for c in CONFIG_EDITS])
def test_weights_that_do_not_fit_a_hand_edited_config_json_are_refused_naming_the_folder(tiny_dir, tmp_path, edit,
                                                                                        says):
    from bbuvl.model.loading import WeightsMismatch

    folder = _with_config_edited(tiny_dir, tmp_path / "edited", edit)
    # Before: another family or fewer layers loaded with the unmatched layers left at random (HF only logs them),
    # and a larger vocabulary was a RuntimeError traceback from HF.
    with pytest.raises(WeightsMismatch) as e:
        load_model_and_processor(str(folder))
    assert str(folder) in str(e.value) and says in str(e.value), str(e.value)


def test_a_folder_without_weight_files_is_refused_naming_it_and_what_it_lacks(tiny_dir, tmp_path):
    from bbuvl.model.loading import WeightsMismatch

    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_dir, folder)
    for weights in folder.glob("model*.safetensors"):
        weights.unlink()
    with pytest.raises(WeightsMismatch, match=r"no model weights in this folder \(model.safetensors"):
        load_model_and_processor(str(folder))


BUILD_EDITS = [
    ("heads that do not divide the width", _set_text("num_attention_heads", lambda n: 3), "divisible by num_heads"),
    ("a negative width", _set_text("hidden_size", lambda n: -4), "negative dimension"),
    ("a rope type transformers lacks", _set_text("rope_parameters", lambda r: r | {"rope_type": "nope"}), "'nope'"),
    ("layers that disagree with layer_types", _set_text("num_hidden_layers", lambda n: n - 1), "layer_types"),
]


@pytest.mark.parametrize(("edit", "says"), [c[1:] for c in BUILD_EDITS], ids=[c[0] for c in BUILD_EDITS])
def test_a_config_json_transformers_cannot_build_is_named_with_its_reason(tiny_dir, tmp_path, edit, says):
    folder = _with_config_edited(tiny_dir, tmp_path / "edited", edit)
    # Before: a KeyError, RuntimeError or huggingface_hub validation error from inside the model's constructor.
    with pytest.raises(ValueError) as e:
        load_model_and_processor(str(folder))
    message = str(e.value)
    assert message.startswith(f"{folder / 'config.json'}: transformers cannot build the model") and says in message, \
        message


HF_FILE_EDITS = [
    ("tokenizer.json of another shape", "tokenizer.json", "{}"),
    ("tokenizer.json cut short", "tokenizer.json", '{"version": "1.0", "added_tokens": ['),
    ("a budget written as text", "generation_config.json", '{"max_new_tokens": "x"}'),
]


@pytest.mark.parametrize(("name", "text"), [c[1:] for c in HF_FILE_EDITS], ids=[c[0] for c in HF_FILE_EDITS])
def test_a_tokenizer_or_generation_config_transformers_cannot_read_is_named(tiny_dir, tmp_path, name, text):
    """A hand-edited tokenizer.json or generation_config.json was a KeyError or TypeError traceback from inside
    transformers, at predict's and serve's start."""
    folder = tmp_path / "edited"
    shutil.copytree(tiny_dir, folder)
    (folder / name).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_model_and_processor(str(folder))
    assert str(e.value).startswith(f"{folder / name}: transformers cannot read it ("), str(e.value)


def test_a_config_json_of_a_far_larger_model_is_refused_before_anything_is_built(tiny_dir, tmp_path):
    from bbuvl.model.loading import WeightsMismatch

    folder = tmp_path / "minimal"
    shutil.copytree(tiny_dir, folder)
    (folder / "config.json").write_text('{"model_type": "qwen2_5_vl"}', encoding="utf-8")  # Qwen's defaults: 75.8B
    # Before: transformers built the 75.8-billion-parameter model before finding the weights did not fit it, and the
    # kernel killed the process for want of memory, without a word (exit 137)
    with pytest.raises(WeightsMismatch, match=rf"^{folder / 'config.json'}: builds a model of 75,789,228,800 "
                                              r"parameters, but its weight files hold 939,200"):
        load_model_and_processor(str(folder))
