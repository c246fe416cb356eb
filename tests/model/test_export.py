"""`bbuvl model export`: stock transformers, in a Python that never imports bbuvl, answers an exported folder token
for token as `bbuvl predict --mode generate --no-constrained` answers the checkpoint; parts no stock loader runs
are refused by name or left out with their measured cost in the card."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app as cli
from tests.model_folders import remove_file

pytestmark = pytest.mark.usefixtures("one_thread")

# What a user without bbu-vl runs: the folder and its model card, stock transformers, nothing else. Where the stock
# processor cannot be built for want of torchvision (its video processor needs it), the processor is built from
# the same classes the stock one wraps (AutoImageProcessor, AutoTokenizer, the folder's chat template) and the
# stock processor's image step is done by hand: each `<|image_pad|>` becomes grid_t*grid_h*grid_w / merge**2 of
# them, and mm_token_type_ids marks them (Qwen2_5_VLProcessor.__call__ and Qwen3VLProcessor.__call__ do this).
STOCK = r'''
import json, logging, re, sys, warnings
from pathlib import Path
from PIL import Image, ImageOps
import transformers
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

# Every warning and every log line above INFO from here on: what a user sees on first contact with the folder.
noise = []
warnings.simplefilter("always")
warnings.showwarning = lambda message, category, *_: noise.append(f"{category.__name__}: {message}")
class Noise(logging.Handler):
    def emit(self, record):
        if record.levelno > logging.INFO:
            noise.append(f"{record.name}: {record.getMessage()}")
logging.getLogger().addHandler(Noise())
transformers.logging.get_logger().addHandler(Noise())  # transformers' own root logger does not propagate

folder, photos = Path(sys.argv[1]), sys.argv[2:]
card = (folder / "README.md").read_text(encoding="utf-8")
messages = json.loads(re.search(r"As chat messages:\n\n```json\n(.*?)\n```", card, re.S).group(1))
frame = json.loads(re.search(r"--mm-processor-kwargs '(\{.*?\})'", card).group(1))
import numpy as np
exec(re.search(r"\n(TURNS = .*?\n    return image.convert\('RGB'\))\n", card, re.S).group(1))  # the card's own
size = {"shortest_edge": frame["min_pixels"], "longest_edge": frame["max_pixels"]}
model = AutoModelForImageTextToText.from_pretrained(folder).eval()
try:
    processor = AutoProcessor.from_pretrained(folder)
    how = "stock AutoProcessor: " + type(processor).__name__
except ImportError as e:
    if "torchvision" not in str(e).lower():
        raise
    processor, how = None, "built: AutoImageProcessor + AutoTokenizer"
    image_processor = AutoImageProcessor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
stops = model.generation_config.eos_token_id
stops = set(stops if isinstance(stops, list) else [stops])
for photo in photos:
    image = upright_rgb(photo)
    if processor is not None:
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, enable_thinking=False)
        inputs = processor(images=[image], text=[text], images_kwargs={"size": size}, return_tensors="pt")
    else:
        text = tokenizer.apply_chat_template(messages, chat_template=template, add_generation_prompt=True,
                                             tokenize=False, enable_thinking=False)
        pixels = image_processor(images=[image], size=size, return_tensors="pt")
        pads = int(pixels["image_grid_thw"][0].prod()) // image_processor.merge_size ** 2
        text = text.replace("<|image_pad|>", "<|image_pad|>" * pads)
        inputs = dict(tokenizer([text], return_tensors="pt"), **pixels)
        pad_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
        inputs["mm_token_type_ids"] = (inputs["input_ids"] == pad_id).long()
    out = model.generate(**inputs, output_scores=True, return_dict_in_generate=True)
    again, plain = model.generate(**inputs), model.generate(**inputs, do_sample=False)
    greedy = out.sequences.tolist() == again.tolist() == plain.tolist()
    new = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    ids = new[:next((i for i, t in enumerate(new) if t in stops), len(new))]
    logprobs = [float(s[0].float().log_softmax(-1)[t]) for s, t in zip(out.scores, new)]
    decode = (processor or tokenizer).decode
    print(json.dumps({"photo": Path(photo).name, "ids": ids, "text": decode(ids, skip_special_tokens=True),
                      "logprobs": logprobs, "greedy": greedy}))
print(json.dumps({"processor": how, "bbuvl_imported": any(m.split(".")[0] == "bbuvl" for m in sys.modules),
                  "noise": noise}))
'''


def stock_answers(folder: Path, photos: list[Path]) -> tuple[dict[str, dict], str]:
    """Each photo's answer from stock transformers in a clean subprocess, and how its processor was built."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", STOCK, str(folder), *map(str, photos)], capture_output=True, text=True,
                         env=env, cwd=folder, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines[-1]["bbuvl_imported"] is False
    # Before: "The following generation flags are not valid and may be ignored: ['temperature']" at every load, for
    # the temperature 0 the export wrote for vLLM. Qwen3.5's notes that optional kernels are not installed are the
    # machine's, not the folder's.
    ours = [line for line in lines[-1]["noise"] if not line.startswith("transformers.integrations.hub_kernels:")]
    assert ours == [], ours
    # generate as the folder sets it, twice, gives the tokens of do_sample=False: greedy, not sampled.
    assert all(line["greedy"] for line in lines[:-1]), [line["photo"] for line in lines[:-1] if not line["greedy"]]
    return {line["photo"]: line for line in lines[:-1]}, lines[-1]["processor"]


def predict_answers(checkpoint: Path, photos: Path, out: Path, *extra: str) -> dict[str, str]:
    """`bbuvl predict --mode generate --no-constrained`, one photo a pass: each photo's raw answer."""
    r = CliRunner().invoke(cli, ["predict", "-c", str(checkpoint), "-i", str(photos), "-o", str(out), "--mode", "generate",
                                 "--no-constrained", "--batch-size", "1", "--device", "cpu", *extra])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    # A model a few steps old rarely writes valid JSON; its raw answer is what is compared.
    assert all(line["error"] in (None, "unparseable output") for line in lines), lines
    return {Path(line["image"]).name: line["raw"] for line in lines}


@pytest.fixture(scope="module")
def photos(small_dataset, tmp_path_factory) -> Path:
    """Four photos: one at its frame already, one resized within the bounds, one above max_pixels, one below min_pixels."""
    folder = tmp_path_factory.mktemp("photos")
    sources = sorted((small_dataset / "images").rglob("*.*"))[:2]
    first, second = Image.open(sources[0]).convert("RGB"), Image.open(sources[1]).convert("RGB")
    first.save(folder / "a_as_is.png")
    second.resize((300, 200), Image.BICUBIC).save(folder / "b_within.png")
    first.resize((640, 480), Image.BICUBIC).save(folder / "c_above_max.png")
    second.resize((120, 100), Image.BICUBIC).save(folder / "d_below_min.png")
    return folder


def plain(folder: Path):  # noqa: ANN201 - a ModelFolder
    """An exported folder as `bbuvl predict -c FOLDER` reads it (its own labels.json)."""
    from bbuvl.cli.predictor import plain_labels, read_folder

    return read_folder(folder, *plain_labels(folder, None, "zh", False))


def chosen_logprobs(checkpoint: object, photos: list[Path], max_new_tokens: int) -> dict[str, list[float]]:
    """The log-probability of each greedy choice as `bbuvl predict` decodes it (its Predictor, one photo a pass):
    `checkpoint` a folder or a ModelFolder read from one."""
    from bbuvl.infer.predictor import Predictor

    predictor = Predictor.load(checkpoint, device="cpu")
    chosen = {}
    for photo in photos:
        _, logprobs = predictor.greedy(predictor.batch([predictor.prepare(photo)], False), None, max_new_tokens)
        chosen[photo.name] = logprobs[0].tolist()
    return chosen


def train_tiny(family: str, small_dataset: Path, out: Path, *overrides: str) -> Path:
    """A checkpoint of a tiny `family` model after a few steps on the small dataset (head on, as `bbuvl train` saves)."""
    from bbuvl.config import load_config
    from bbuvl.tiny.model import build_tiny_model
    from bbuvl.train.trainer import train

    base = build_tiny_model(out / "tiny", family=family, seed=0)
    cfg = load_config(None, [
        f"model.path={base}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", "data.teachers=null", "data.teacher_ratio=0",
        "data.num_workers=0", f"training.output_dir={out / 'run'}", "training.per_device_batch_size=2",
        "training.max_steps=3", "training.gradient_accumulation_steps=1", "training.bf16=false",
        "training.gradient_checkpointing=false", "training.use_cpu=true", "training.save_steps=100", "training.warmup_ratio=0",
        "training.lr.llm=1e-3", "training.lr.vision=1e-3", "training.lr.merger=1e-3",
        "detection.num_queries=8", "detection.num_heads=4", "detection.caption_layers=1", "detection.decoder_layers=1",
        "inference.max_new_tokens=24", *overrides,
    ])
    return Path(train(cfg, progress=False)["final"])


def export(checkpoint: Path, out: Path, *extra: str):
    """`bbuvl model export` through the CLI."""
    return CliRunner().invoke(cli, ["model", "export", str(checkpoint), str(out), *extra])


def portable_export(family: str, small_dataset: Path, out: Path, *overrides: str) -> tuple[Path, Path]:
    """A tiny checkpoint trained without vision positions (head on) and its export."""
    checkpoint = train_tiny(family, small_dataset, out, "model.vision_positions=false", *overrides)
    r = export(checkpoint, out / "exported")
    assert r.exit_code == 0, r.output
    assert "detection_head.safetensors" in r.output  # left out, and said so
    assert ("LoRA merged" in r.output) == ("model.lora.enabled=true" in overrides)
    return checkpoint, out / "exported"


@pytest.fixture(scope="module")
def portable(small_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """The Qwen2.5-VL portable checkpoint and its export, shared by the default run's tests."""
    return portable_export("qwen2_5_vl", small_dataset, tmp_path_factory.mktemp("portable"))


@pytest.mark.parametrize("family", [
    "qwen2_5_vl",
    pytest.param("qwen3_vl", marks=pytest.mark.slow),
    pytest.param("qwen3_5", marks=pytest.mark.slow),
])
def test_stock_transformers_answers_an_export_token_for_token_as_bbuvl_predict(family, small_dataset, photos, tmp_path,
                                                                              request):
    if family == "qwen2_5_vl":  # shared with the next test: one training fewer in the default run
        checkpoint, exported = request.getfixturevalue("portable")
    else:  # Qwen3-VL trains LoRA adapters, which the export merges
        lora = ["model.lora.enabled=true", "training.lr.adapter=1e-3"] if family == "qwen3_vl" else []
        checkpoint, exported = portable_export(family, small_dataset, tmp_path, *lora)
    expected = predict_answers(checkpoint, photos, tmp_path / "pred.jsonl")
    got, how = stock_answers(exported, sorted(photos.iterdir()))
    assert set(got) == set(expected) == {p.name for p in photos.iterdir()}
    assert {name: a["text"] for name, a in got.items()} == expected
    assert any(a["ids"] for a in got.values()), "every answer empty: nothing was compared"
    # A model a few steps old answers alike whatever the photo; the probabilities of its choices do depend on the
    # photo, through every step the two sides must share (resize, normalisation, image pads, positions).
    ours = chosen_logprobs(checkpoint, sorted(photos.iterdir()), 24)
    for name, answer in got.items():
        assert answer["logprobs"] == pytest.approx(ours[name], abs=1e-4), name
    firsts = sorted(v[0] for v in ours.values())
    assert firsts[-1] - firsts[0] > 1e-3, f"the photos do not move the answer's probabilities: {firsts}"
    from transformers.utils import is_torchvision_available

    assert how.startswith("stock") == is_torchvision_available(), how


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_on_an_exported_folder_answers_as_on_the_checkpoint_with_its_own_labels(portable, photos, tmp_path):
    checkpoint, exported = portable
    one = tmp_path / "one"
    one.mkdir()
    for name in ("b_within.png", "c_above_max.png"):
        (one / name).write_bytes((photos / name).read_bytes())
    expected = predict_answers(checkpoint, one, tmp_path / "ckpt.jsonl")
    assert predict_answers(exported, one, tmp_path / "exported.jsonl") == expected  # its labels.json, read by itself
    got = predict_answers(exported, one, tmp_path / "given.jsonl", "--labels", str(exported / "labels.json"))
    assert got == expected
    # A few steps' answers are alike in any precision; their probabilities are not. The float32 export was run in
    # bfloat16, the default for a folder without a run config, and its choices' log-probabilities were 0.02 off.
    ours, theirs = (chosen_logprobs(folder, sorted(one.iterdir()), 12) for folder in (checkpoint, plain(exported)))
    for name, logprobs in theirs.items():
        assert logprobs == pytest.approx(ours[name], abs=1e-4), name


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_on_an_export_of_a_run_with_its_own_hierarchy_asks_with_the_prompt_it_trained_with(small_dataset,
                                                                                                    photos, tmp_path):
    # Before: labels.json held the labels and the language only, and `bbuvl predict -c EXPORT` rebuilt the system
    # prompt with the shipped hierarchy: the run's own cues were replaced by the shipped ones, without a word.
    from bbuvl.data.labels import DEFAULT_HIERARCHY
    from bbuvl.infer.predictor import Predictor

    own = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    for name, category in own["categories"].items():
        category["cue_zh"] = f"本次训练的线索：{name}"
    (tmp_path / "hierarchy.json").write_text(json.dumps(own, ensure_ascii=False), encoding="utf-8")
    checkpoint = train_tiny("qwen2_5_vl", small_dataset, tmp_path, "model.vision_positions=false",
                            "detection.enabled=false", "training.max_steps=1", f"data.hierarchy={tmp_path / 'hierarchy.json'}")
    assert export(checkpoint, tmp_path / "exported").exit_code == 0
    trained = Predictor.load(checkpoint, device="cpu")
    asked = Predictor.load(plain(tmp_path / "exported"), device="cpu")  # as `bbuvl predict -c EXPORT` reads it
    assert "本次训练的线索" in trained.prompt.system
    assert asked.prompt.system == trained.prompt.system
    photo = sorted(photos.iterdir())[0]
    sent, meant = (p.encode(p.prepare(photo)).sample.input_ids.tolist() for p in (asked, trained))
    assert sent == meant


def test_a_plain_folder_loads_in_the_dtype_its_config_records(portable, tmp_path):
    import torch

    from bbuvl.infer.predictor import Predictor

    _, exported = portable
    half = tmp_path / "half"
    shutil.copytree(exported, half)
    config = json.loads((half / "config.json").read_text(encoding="utf-8"))
    assert config["dtype"] == "float32"
    config["dtype"] = "bfloat16"
    (half / "config.json").write_text(json.dumps(config), encoding="utf-8")
    for folder, dtype in ((exported, "float32"), (half, "bfloat16")):
        predictor = Predictor.load(plain(folder), device="cpu")
        assert {p.dtype for p in predictor.model.vlm.parameters()} == {getattr(torch, dtype)}, folder


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_of_the_demo_recipe_is_refused_naming_vision_positions_or_exported_with_their_ap_cost(
        small_dataset, tmp_path):
    from bbuvl.config import load_config
    from bbuvl.tiny.model import build_tiny_model
    from bbuvl.train.trainer import train

    base = build_tiny_model(tmp_path / "tiny", seed=0)
    demo = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    cfg = load_config(demo, [
        f"model.path={base}", "model.reuse_modules=false", "model.max_pixels=50176", "model.max_vision_tokens=64",
        f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", f"training.output_dir={tmp_path / 'run'}",
        "training.max_steps=2", "training.per_device_batch_size=2", "training.save_steps=100", "training.warmup_ratio=0",
        "detection.caption_refit.steps=0", "detection.pixel_context=0", "inference.max_new_tokens=16",
    ])
    assert cfg.model.vision_positions  # the demo's recipe trains them
    checkpoint = Path(train(cfg, progress=False)["final"])

    refused = export(checkpoint, tmp_path / "refused")
    assert refused.exit_code != 0
    assert "vision_positions.safetensors" in refused.output and "--drop-vision-positions" in refused.output
    assert not (tmp_path / "refused" / "config.json").exists()

    val = small_dataset / "val.jsonl"
    r = export(checkpoint, tmp_path / "exported", "--drop-vision-positions", "--val", str(val))
    assert r.exit_code == 0, r.output
    card = (tmp_path / "exported" / "README.md").read_text(encoding="utf-8")
    assert "Leaving out `vision_positions.safetensors` was measured on 2 validation photos" in card
    assert "| bbu-vl, with it |" in card and "| this export, without it |" in card and "| cost (with - without) |" in card
    assert "of the 2 answers differ" in card

    # A --val of another project's labels: both scores 0, and the card said the positions cost +0.000
    from bbuvl.data.schema import read_records, write_dataset

    foreign = tmp_path / "foreign" / "val.jsonl"
    foreign.parent.mkdir()
    (foreign.parent / "images").symlink_to(small_dataset / "images")
    write_dataset(foreign, [r.model_copy(update={"objects": [o.model_copy(update={"desc": "other project's part"})
                                                             for o in r.objects]}) for r in read_records(val)])
    r = export(checkpoint, tmp_path / "foreign_export", "--drop-vision-positions", "--val", str(foreign))
    said = " ".join(r.output.split())
    assert r.exit_code != 0 and f"{foreign}: none of its 1 labels (e.g. \"other project's part\")" in said, r.output
    assert not (tmp_path / "foreign_export" / "README.md").exists()


def test_a_checkpoint_bbuvl_train_saves_names_the_stock_processor_that_stock_autoprocessor_loads_where_it_can(
        trained_checkpoint):
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available
    from transformers.video_processing_utils import BaseVideoProcessor

    from bbuvl.data.families import family_of

    stock = family_of(trained_checkpoint).processor_class
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        assert json.loads((trained_checkpoint / name).read_text())["processor_class"] == stock, name
    BaseVideoProcessor.get_video_processor_dict(str(trained_checkpoint))  # the stock processor's video settings resolve
    if is_torchvision_available():
        processor = AutoProcessor.from_pretrained(str(trained_checkpoint))
        assert type(processor).__name__ == stock and processor.image_processor is not None
    else:  # the one thing missing here
        with pytest.raises(ImportError, match="(?i)torchvision"):
            AutoProcessor.from_pretrained(str(trained_checkpoint))


def test_serve_on_a_plain_folder_without_labels_needs_them_as_predict_does(portable, photos, tmp_path):
    _, exported = portable
    bare = tmp_path / "bare"
    shutil.copytree(exported, bare)
    (bare / "labels.json").unlink()
    for command in (["serve", "--port", "0"], ["predict", "-i", str(photos), "-o", str(tmp_path / "x.jsonl")]):
        r = CliRunner().invoke(cli, [command[0], "-c", str(bare), *command[1:]], env={"BBUVL_API_KEYS": "k" * 32})
        assert r.exit_code == 2 and "--labels labels.json" in r.output.replace("\n", " "), r.output


def test_an_exports_prompt_language_is_the_one_its_labels_json_records(portable, photos, tmp_path):
    _, exported = portable
    english = tmp_path / "english"
    shutil.copytree(exported, english)
    labels = json.loads((english / "labels.json").read_text(encoding="utf-8"))
    (english / "labels.json").write_text(json.dumps(labels | {"lang": "en"}, ensure_ascii=False), encoding="utf-8")
    one = tmp_path / "one"
    one.mkdir()
    (one / "a.png").write_bytes((photos / "b_within.png").read_bytes())
    out = tmp_path / "en.jsonl"
    r = CliRunner().invoke(cli, ["predict", "-c", str(english), "-i", str(one), "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    key = json.loads(out.with_name("en.jsonl.predict.json").read_text(encoding="utf-8"))["key"]
    assert key["options"]["lang"] == "en"
    r = CliRunner().invoke(cli, ["predict", "-c", str(english), "-i", str(one), "-o", str(tmp_path / "zh.jsonl"),
                                 "--lang", "zh"])
    assert r.exit_code == 2 and "records the prompt in 'en'" in " ".join(r.output.split()), r.output


@pytest.mark.parametrize("lang", ["fr", "EN", 3])
def test_an_exports_labels_json_recording_no_language_it_takes_is_refused_naming_it(portable, photos, tmp_path, lang):
    _, exported = portable
    edited = tmp_path / "edited"
    shutil.copytree(exported, edited)
    labels = json.loads((edited / "labels.json").read_text(encoding="utf-8"))
    (edited / "labels.json").write_text(json.dumps(labels | {"lang": lang}, ensure_ascii=False), encoding="utf-8")
    # Before: predicted and served in --lang's default (zh), the file's language dropped without a word. The port is
    # held, so that a server that would start fails rather than serves.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        for command in (["predict", "-i", str(photos), "-o", str(tmp_path / "x.jsonl")],
                        ["serve", "--port", str(held.getsockname()[1])]):
            r = CliRunner().invoke(cli, [command[0], "-c", str(edited), *command[1:]], env={"BBUVL_API_KEYS": "k" * 32})
            assert r.exit_code == 2 and (f"{edited / 'labels.json'}: 'lang' must be zh or en (the language of the "
                                         f"prompt its model answers), got {lang!r}") in " ".join(r.output.split()), r.output
    assert not (tmp_path / "x.jsonl").exists()


def test_a_val_that_is_a_folder_is_refused_before_anything_loads(tmp_path):
    r = export(tmp_path / "no checkpoint", tmp_path / "out", "--drop-vision-positions", "--val", str(tmp_path))
    assert r.exit_code == 2 and "a folder; --val is a validation JSONL file" in r.output, r.output


def test_dropping_vision_positions_a_checkpoint_does_not_have_is_refused_before_its_weights_load(portable, tmp_path):
    import shutil

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(portable[0], checkpoint)
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # loading it would fail: a refusal after loading names it instead
    (tmp_path / "val.jsonl").write_text("", encoding="utf-8")
    r = export(checkpoint, tmp_path / "out", "--drop-vision-positions", "--val", str(tmp_path / "val.jsonl"))
    said = " ".join(r.output.split())
    # Before: every weight loaded, then 'has no vision positions'.
    assert r.exit_code == 2 and f"{checkpoint}: has no vision positions (vision_positions.safetensors); nothing to " \
                                "drop" in said, said
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_without_its_chat_template_is_refused_naming_the_file(portable, tmp_path):
    import shutil

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(portable[0], checkpoint)
    (checkpoint / "chat_template.jinja").unlink()
    r = export(checkpoint, tmp_path / "out")
    said = " ".join(r.output.split())
    # Before: exported, a folder whose card says its template renders the prompt, and stock apply_chat_template failed.
    assert r.exit_code == 2 and f"{checkpoint / 'chat_template.jinja'}: missing, so the processor has no chat " \
                                "template" in said, said
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_export_of_a_checkpoint_changed_since_training_saved_it_says_so_as_predict_does(portable, tmp_path):
    import shutil

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(portable[0], checkpoint)
    weights = checkpoint / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 1  # one bit of a weight: a copy's damage
    weights.write_bytes(bytes(data))
    r = export(checkpoint, tmp_path / "out")
    said = " ".join(r.output.split())
    # Before: exported without a word, into a folder that records no digest to tell the damage by afterwards
    assert r.exit_code == 0 and f"warning: {checkpoint}: model.safetensors changed since training saved the " \
                                "checkpoint" in said, said


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json"])
def test_a_checkpoint_missing_a_file_transformers_loads_is_refused_naming_it(portable, tmp_path, name):
    import shutil

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(portable[0], checkpoint)
    said = remove_file(checkpoint, name)
    r = export(checkpoint, tmp_path / "out")
    # Before: transformers' 'Unrecognized model in ...' or 'Can't load video processor for ...'.
    assert r.exit_code == 2 and f"{checkpoint}: incomplete or damaged checkpoint ({said} missing)" in " ".join(r.output.split())
    assert not (tmp_path / "out").exists()


def test_an_export_names_its_mrope_sections_where_readers_before_transformers_5_take_them(portable):
    from transformers import AutoConfig

    _, exported = portable
    saved = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    text = saved["text_config"]
    # A stack on transformers 4 (vLLM releases pinned to it) reads these; without mrope_section it runs 1-D positions.
    assert text["rope_scaling"]["mrope_section"] == text["rope_parameters"]["mrope_section"]
    assert text["rope_theta"] == text["rope_parameters"]["rope_theta"]
    assert saved["torch_dtype"] == saved["dtype"]
    # transformers 5 reads the copies back as the very parameters it wrote.
    read = AutoConfig.from_pretrained(exported).text_config.rope_parameters
    assert read == text["rope_parameters"], read


def test_legacy_rope_keys_copy_qwen3_vl_interleaved_sections_and_keep_what_is_there():
    from bbuvl.model.export import legacy_rope_keys

    rope = {"mrope_interleaved": True, "mrope_section": [24, 20, 20], "rope_theta": 5000000, "rope_type": "default"}
    out = json.loads(legacy_rope_keys(json.dumps({"dtype": "bfloat16", "text_config": {"rope_parameters": rope}})))
    assert out["text_config"]["rope_scaling"] == {"mrope_interleaved": True, "mrope_section": [24, 20, 20],
                                                  "rope_type": "default"}
    assert out["text_config"]["rope_theta"] == 5000000 and out["torch_dtype"] == "bfloat16"
    kept = {"rope_scaling": {"mrope_section": [1, 1, 2]}, "rope_parameters": rope}
    assert json.loads(legacy_rope_keys(json.dumps({"text_config": kept})))["text_config"]["rope_scaling"] == \
        {"mrope_section": [1, 1, 2]}
    assert "rope_scaling" not in json.loads(legacy_rope_keys('{"text_config": {"rope_parameters": {"rope_theta": 1}}}'))[
        "text_config"]


def test_an_export_names_its_frame_where_image_processors_before_size_read_it(portable):
    from transformers import AutoImageProcessor

    checkpoint, exported = portable
    contract = json.loads((checkpoint / "coordinate_contract.json").read_text(encoding="utf-8"))
    for name in ("preprocessor_config.json", "processor_config.json"):
        saved = json.loads((exported / name).read_text(encoding="utf-8"))
        settings = saved.get("image_processor", saved)
        assert (settings["min_pixels"], settings["max_pixels"]) == (contract["min_pixels"], contract["max_pixels"]), name
        assert (settings["size"]["shortest_edge"], settings["size"]["longest_edge"]) == (settings["min_pixels"],
                                                                                         settings["max_pixels"])
    size = AutoImageProcessor.from_pretrained(exported).size  # transformers 5 reads the same bounds from both
    assert (size.shortest_edge, size.longest_edge) == (contract["min_pixels"], contract["max_pixels"])


def test_an_export_is_greedy_in_transformers_by_its_file_and_in_vllm_by_the_cards_command(portable):
    import shlex

    from transformers import GenerationConfig

    _, exported = portable
    saved = json.loads((exported / "generation_config.json").read_text(encoding="utf-8"))
    # No temperature: transformers warns of one beside do_sample false at every load (the stock test above hears none).
    assert saved["do_sample"] is False and "temperature" not in saved, saved
    assert GenerationConfig.from_pretrained(exported).do_sample is False
    # vLLM takes its default decoding from a temperature only, sampling at 1.0 without one: the card's command gives it.
    card = (exported / "README.md").read_text(encoding="utf-8")
    command = shlex.split(re.search(r"```bash\n(vllm serve .*?)\n```", card, re.S).group(1).replace("\\\n", " "))
    override = json.loads(command[command.index("--override-generation-config") + 1])
    assert override == {"temperature": 0}, command
    frame = json.loads(command[command.index("--mm-processor-kwargs") + 1])
    processor = json.loads((exported / "preprocessor_config.json").read_text(encoding="utf-8"))
    assert (frame["min_pixels"], frame["max_pixels"]) == (processor["min_pixels"], processor["max_pixels"])


def test_an_exports_weights_are_readable_by_whoever_may_read_its_other_files(portable):
    _, exported = portable
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in exported.iterdir()}
    # Before: safetensors 0.8 created model.safetensors 0600 beside a 0644 config.json: a colleague given the export
    # (another user of the machine, a shared folder) read its config and got PermissionError on its weights.
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_export_carries_the_scale_tiles_auto_reads_and_the_choices_made_for_its_generate_answers(portable, tmp_path):
    import shutil

    from bbuvl.data.faults import Faults
    from bbuvl.infer.predictor import Predictor
    from bbuvl.infer.tile_scale import ChosenTileScale
    from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(portable[0], checkpoint)
    faults = sorted(Faults.load(None).labels)
    ChosenTileScale(scale=0.5, metric="AP50", train_scale=1.0, candidates=[], photos=2, chosen_on="val.jsonl",
                    mode="generate").save(checkpoint)
    ChosenThresholds(VerdictThresholds(0.3, 0.6), 0.9, 0.9, 1.0, 1.0, 2, 1, faults, "val.jsonl",
                     mode="generate").save(checkpoint)
    ChosenThresholds(VerdictThresholds(0.1, 0.2), 0.9, 0.9, 1.0, 1.0, 2, 1, faults, "val.jsonl", tiled=True,
                     mode="head").save(checkpoint)
    r = export(checkpoint, tmp_path / "out")
    said = " ".join(r.output.split())
    assert r.exit_code == 0 and "verdict_thresholds_tiled.json" in said, r.output
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "`verdict_thresholds_tiled.json`: chosen on head mode's predictions; this folder answers in generate " \
           "mode only." in card

    ours = Predictor.load(checkpoint, device="cpu")
    labels = json.loads((tmp_path / "out" / "labels.json").read_text(encoding="utf-8"))["labels"]
    from bbuvl.model.checkpoint import read_model_folder

    theirs = Predictor.load(read_model_folder(tmp_path / "out", labels=labels), device="cpu")
    # Before: the export had no training_scale.json, and `predict -c OUT --tiles auto` tiled at scale 1 (3x3 where the
    # checkpoint cut 1x2), saying 'the scale the checkpoint trained at'; its verdicts took the config's defaults.
    assert theirs.train_scale == ours.train_scale == 0.5
    assert theirs.part_sides == ours.part_sides != () and theirs.long_sides == ours.long_sides
    assert theirs.chosen_for_faults()[0] == ours.chosen_for_faults()[0] is not None
    assert theirs.chosen_for_faults()[1] is None  # the head's, left out and said so


def test_an_export_leaves_out_the_tiled_pair_chosen_with_a_scale_it_leaves_out(portable, tmp_path):
    # `choose-tiles --choose-thresholds` ties its two files by one id (infer/verdict.py `unpaired`); a scale chosen
    # again in head mode keeps the pair's id, and the export, which leaves the head's scale out, carried the pair alone:
    # predict there left it out as if a choose-tiles run had stopped between its files.
    import shutil

    from bbuvl.cli.choose_tiles import save_choices
    from bbuvl.data.faults import Faults
    from bbuvl.infer.tile_scale import ChosenTileScale
    from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(portable[0], checkpoint)
    scale = ChosenTileScale(scale=0.5, metric="AP50", train_scale=1.0, candidates=[], photos=2, chosen_on="val.jsonl",
                            mode="generate")
    save_choices(checkpoint, scale, ChosenThresholds(VerdictThresholds(0.3, 0.6), 0.9, 0.9, 1.0, 1.0, 2, 1,
                                                     sorted(Faults.load(None).labels), "val.jsonl", tiled=True,
                                                     mode="generate", tile_scale=0.5))
    save_choices(checkpoint, replace(scale, mode="head"), None)  # chosen again in head mode, the pair kept
    r = export(checkpoint, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "out" / "tile_scale.json").exists()
    assert not (tmp_path / "out" / "verdict_thresholds_tiled.json").exists()
    card = " ".join((tmp_path / "out" / "README.md").read_text(encoding="utf-8").split())
    assert "`verdict_thresholds_tiled.json`: chosen with the tile_scale.json beside it, which this export leaves out" \
        in card, card


def test_an_export_carries_the_choices_it_read_at_its_start_not_those_chosen_while_it_saved(portable, tmp_path,
                                                                                            monkeypatch):
    # `eval --choose-thresholds` writes beside a checkpoint being read (outputs.CHOICE_FILES): one run on head-mode
    # predictions while the export saved its weights was copied into it at the end, a choice it leaves out, under a
    # card that named the generate-mode one it had judged.
    import shutil

    from transformers import PreTrainedModel

    from bbuvl.data.faults import Faults
    from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(portable[0], checkpoint)
    faults = sorted(Faults.load(None).labels)
    ChosenThresholds(VerdictThresholds(0.3, 0.6), 0.9, 0.9, 1.0, 1.0, 2, 1, faults, "val.jsonl",
                     mode="generate").save(checkpoint)
    chosen = (checkpoint / "verdict_thresholds.json").read_bytes()
    save = PreTrainedModel.save_pretrained

    def chosen_meanwhile(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - transformers' own signature
        ChosenThresholds(VerdictThresholds(0.1, 0.2), 0.9, 0.9, 1.0, 1.0, 2, 1, faults, "val.jsonl",
                         mode="head").save(checkpoint)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", chosen_meanwhile)
    r = export(checkpoint, tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "verdict_thresholds.json").read_bytes() == chosen
    assert "verdict_thresholds.json`: chosen on" not in (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert (checkpoint / "verdict_thresholds.json").read_bytes() != chosen  # the new choice stays the checkpoint's


def test_a_checkpoint_whose_training_scale_is_not_one_is_refused_naming_it(portable, tmp_path):
    import shutil

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(portable[0], checkpoint)
    (checkpoint / "training_scale.json").write_text('{"median": "big"}', encoding="utf-8")
    r = export(checkpoint, tmp_path / "out")
    said = " ".join(r.output.split())
    # Before: copied into the export as it was, where `bbuvl predict -c OUT` then failed on it.
    assert r.exit_code == 2 and f"{checkpoint / 'training_scale.json'}: not a training scale" in said, said
    assert not (tmp_path / "out").exists()


def test_an_export_names_the_run_settings_that_judged_verdicts_which_a_plain_folder_cannot_hold(tmp_path):
    from bbuvl.config import Config
    from bbuvl.model.checkpoint import ModelFolder, Prompt
    from bbuvl.model.export import left_out_parts

    hierarchy = tmp_path / "faults.json"
    hierarchy.write_text("{}", encoding="utf-8")
    cfg = Config()
    prompt = Prompt("找出每个部件。", ["线缆"], "zh")
    assert left_out_parts(ModelFolder(tmp_path, True, cfg, prompt, None), []) == []
    cfg.data.hierarchy = str(hierarchy)
    cfg.inference.verdict_review, cfg.inference.verdict_fail_tiled = 0.1, 0.9
    left = {p.part: p.why for p in left_out_parts(ModelFolder(tmp_path, True, cfg, prompt, None), [])}
    # Before: the card listed the head and read-out only, and predict on the export judged every photo by the shipped
    # hierarchy and the default thresholds, where on the checkpoint the run's own judged them.
    assert f"the run's hierarchy, {hierarchy}, says which labels are faults" in left["data.hierarchy"]
    assert "--hierarchy" in left["data.hierarchy"]
    assert left["inference.verdict_*"].startswith("the run's verdict thresholds (verdict_review 0.1, verdict_fail_tiled "
                                                  "0.9)")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_export_names_each_inference_setting_it_cannot_hold_and_the_options_that_give_them_back(
        small_dataset, photos, tmp_path):
    checkpoint = train_tiny("qwen2_5_vl", small_dataset, tmp_path, "model.vision_positions=false", "inference.tiles=2x2",
                            "inference.score_threshold=0.5", "inference.constrained=false")
    r = export(checkpoint, tmp_path / "out")
    said = " ".join(r.output.split())
    # Before: "left out: detection_head.safetensors" alone, and predict on the export ran one constrained pass where
    # the checkpoint ran 2x2 tiles unconstrained, without a word.
    assert r.exit_code == 0 and all(f"inference.{key}" in said for key in ("constrained", "score_threshold", "tiles")), said
    assert "max_new_tokens" not in said  # generation_config.json carries it
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    given = re.findall(r"^- `inference\.\w+`: the run's .*; `bbuvl predict` on this folder takes .* unless given `([^`]+)`\.$",
                       card, re.M)
    assert given == ["--no-constrained", "--score-threshold 0.5", "--tiles 2x2"], card

    def predicted(folder: Path, *options: str) -> list[dict]:
        out = tmp_path / f"{folder.name}{len(options)}.jsonl"
        r = CliRunner().invoke(cli, ["predict", "-c", str(folder), "-i", str(photos), "-o", str(out), "--device", "cpu",
                                     *options])
        assert r.exit_code == 0, r.output
        return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]

    ours = predicted(checkpoint)
    assert all(line["tiled"] for line in ours)
    assert predicted(tmp_path / "out", *" ".join(given).split()) == ours
    assert not any(line.get("tiled") for line in predicted(tmp_path / "out"))


def test_an_export_says_which_run_settings_only_modes_it_cannot_run_read(tmp_path):
    from bbuvl.config import Config
    from bbuvl.model.checkpoint import ModelFolder, Prompt
    from bbuvl.model.export import left_out_parts

    cfg = Config()
    cfg.inference.mode, cfg.inference.objectness_threshold, cfg.inference.tile_refine = "head", 0.3, []
    cfg.inference.tile_overlap, cfg.inference.max_new_tokens = 0.3, 77
    left = {p.part: p.why for p in left_out_parts(ModelFolder(tmp_path, True, cfg, Prompt("?", ["a"], "en"), None), [])}
    assert left == {
        "inference.mode": "the run's head; this folder answers in generate mode only",
        "inference.objectness_threshold": "the run's 0.3; only modes this folder cannot run read it (it answers in "
                                          "generate mode only)",
        "inference.tile_overlap": "the run's 0.3; `bbuvl predict` on this folder takes 0.15; none of its options sets it",
        "inference.tile_refine": "the run's []; `bbuvl predict` on this folder takes null unless given "
                                 "`--tile-refine none`"}


def test_every_predict_option_an_export_names_is_one_and_sets_an_inference_setting():
    import typer.main

    from bbuvl.config import InferenceConfig
    from bbuvl.model.export import PREDICT_OPTIONS, TRAINED_MODE_KEYS

    predict = typer.main.get_command(cli).commands["predict"]
    options = {o for p in predict.params for o in (*p.opts, *p.secondary_opts)}
    assert {o for option in PREDICT_OPTIONS.values() for o in option.split("/")} <= options
    assert {*PREDICT_OPTIONS, *TRAINED_MODE_KEYS} <= set(InferenceConfig.model_fields)


def test_a_cut_answer_on_an_export_names_the_file_its_budget_is_in(portable, photos, tmp_path):
    _, exported = portable
    r = CliRunner().invoke(cli, ["predict", "-c", str(exported), "-i", str(photos), "-o", str(tmp_path / "p.jsonl"),
                                 "--mode", "generate", "--device", "cpu", "--max-new-tokens", "3"], env={"COLUMNS": "300"})
    said = " ".join(r.output.split())
    # Before: "Raise `inference.max_new_tokens` in the checkpoint's bbuvl.yaml", a file no export has.
    assert r.exit_code == 0 and "reached the token budget" in said, r.output
    assert "`max_new_tokens` in the folder's generation_config.json, or pass --max-new-tokens" in said, said


@pytest.mark.parametrize("system", [3, "", ["prompt"]])
def test_a_labels_file_whose_system_prompt_is_no_text_is_refused_naming_it(tmp_path, system):
    from bbuvl.data.layout import recorded_prompt

    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"labels": ["线缆"], "lang": "zh", "system": system}), encoding="utf-8")
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: 'system' must be the system prompt the model was "
                                         "trained with"):
        recorded_prompt(path)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl", "qwen3_5"])
def test_an_export_checks_its_chat_template_renders_the_prompt_bbuvl_asks_with(family, tmp_path):
    from bbuvl.data.coords import CoordinateContract
    from bbuvl.data.labels import Hierarchy
    from bbuvl.encode.prompts import system_prompt
    from bbuvl.model.checkpoint import Prompt
    from bbuvl.model.export import template_drift
    from bbuvl.model.loading import load_processor
    from bbuvl.tiny.model import build_tiny_model
    from bbuvl.tiny.templates import chat_template

    processor = load_processor(str(build_tiny_model(tmp_path / "tiny", family=family, seed=0)))
    prompt = Prompt(system_prompt(["线缆"], Hierarchy.load(None), "zh", family), ["线缆"], "zh")
    contract = CoordinateContract(family=family)
    assert template_drift(processor, prompt, contract) is None  # the family's own, as every tiny and Qwen folder has
    other = {"qwen2_5_vl": "qwen3_5", "qwen3_vl": "qwen3_5", "qwen3_5": "qwen2_5_vl"}[family]
    processor.chat_template = chat_template(other)  # another family's template copied into the checkpoint
    # Before: exported without a word, and stock transformers asked the model with another prompt (a think block more
    # or less) than bbu-vl trained and predicts it with
    assert template_drift(processor, prompt, contract).startswith("renders another prompt than bbu-vl's from token ")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_whose_chat_template_renders_another_prompt_is_refused_naming_it(portable, tmp_path):
    import shutil

    from bbuvl.tiny.templates import chat_template

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(portable[0], checkpoint)
    (checkpoint / "chat_template.jinja").write_text(chat_template("qwen3_5"), encoding="utf-8")
    r = export(checkpoint, tmp_path / "out")
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and f"{checkpoint / 'chat_template.jinja'}: renders another prompt than bbu-vl's from " \
                                "token" in said and "(the template: '<think>" in said, said
    assert not (tmp_path / "out").exists()
