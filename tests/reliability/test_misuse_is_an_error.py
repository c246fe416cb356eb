"""Class 6: misuse is an error, not an empty success.

A bad number, an option a checkpoint cannot serve, or inputs with nothing to score end in one line that names
the option (or override) and the value, exit code 2, before any work.
"""

from __future__ import annotations

import json
import math
import re
import typing
from pathlib import Path

import pytest
import torch
import typer
from PIL import Image
from pydantic import BaseModel
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import Config, ConfigError, LearningRates, load_config


def usage_error(result, *needles: str) -> str:
    """The text of a refusal: exit 2, no traceback, every needle present (whitespace and box borders folded)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and not isinstance(result.exception, (ValueError, TypeError, RuntimeError))
    text = " ".join(result.output.replace("│", " ").split())
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, env={"COLUMNS": "240"})


# --- every numeric option of every command ---------------------------------------------------------

# (command and its required arguments, option, bad value, how the value is printed back)
BAD_OPTIONS = [
    (["predict", "-c", "{d}", "-i", "{d}", "-o", "{d}/p.jsonl"], "--batch-size", "-1", "-1"),
    (["predict", "-c", "{d}", "-i", "{d}", "-o", "{d}/p.jsonl"], "--batch-size", "0", "0"),
    (["eval", "--pred", "{d}/p", "--gt", "{d}/g", "--out", "{d}/m.json"], "--min-score", "nan", "nan"),
    (["eval", "--pred", "{d}/p", "--gt", "{d}/g", "--out", "{d}/m.json"], "--min-score", "5", "5.0"),
    (["eval", "--pred", "{d}/p", "--gt", "{d}/g", "--out", "{d}/m.json"], "--iou", "0", "0.0"),
    (["eval", "--pred", "{d}/p", "--gt", "{d}/g", "--out", "{d}/m.json"], "--level", "0", "0"),
    (["eval", "--pred", "{d}/p", "--gt", "{d}/g", "--out", "{d}/m.json"], "--worst", "-3", "-3"),
    (["viz", "{d}/p", "{d}/o"], "--limit", "0", "0"),
    (["viz", "{d}/p", "{d}/o"], "--iou", "nan", "nan"),
    (["data", "convert", "{d}", "{d}/o"], "--val-ratio", "1", "1.0"),
    (["data", "convert", "{d}", "{d}/o"], "--teachers", "-1", "-1"),
    (["data", "convert", "{d}", "{d}/o"], "--workers", "0", "0"),
    (["data", "synth", "{d}/o"], "--n-train", "-5", "-5"),
    (["data", "synth", "{d}/o"], "--workers", "0", "0"),
    (["data", "check", "{d}"], "--workers", "-1", "-1"),
    (["data", "stats", "{d}"], "--max-pixels", "0", "0"),
    (["data", "teachers", "{d}/t", "{d}/o"], "--k", "0", "0"),
    (["data", "split", "{d}/t", "{d}/o"], "--val-ratio", "nan", "nan"),
    (["data", "import-coco", "{d}/a", "{d}", "{d}/o"], "--teachers", "-2", "-2"),
    (["fewshot", "tiny-backbone", "clip", "{d}/o"], "--image-size", "4", "4"),
    (["fewshot", "classify", "--support", "{d}", "--query", "{d}", "--backbone", "pixels", "--out", "{d}/o.csv"],
     "--margin", "inf", "inf"),
    (["fewshot", "classify", "--support", "{d}", "--query", "{d}", "--backbone", "pixels", "--out", "{d}/o.csv"],
     "--batch-size", "0", "0"),
    (["fewshot", "eval", "--support", "{d}", "--query", "{d}", "--backbone", "pixels", "--out", "{d}/o"], "--level", "0", "0"),
    (["doctor", "memory", "{d}"], "--n", "0", "0"),
    (["doctor", "memory", "{d}"], "--tolerance-mb", "nan", "nan"),
    (["doctor", "features", "{d}"], "--samples", "0", "0"),
    (["doctor", "coordinates", "{d}"], "--samples", "0", "0"),
    (["doctor", "attention", "{d}", "{d}/x.png"], "--top-k", "0", "0"),
    (["doctor", "landscape", "{d}", "{d}/t"], "--steps", "1", "1"),
    (["doctor", "landscape", "{d}", "{d}/t"], "--span", "0", "0.0"),
    (["serve", "-c", "{d}"], "--port", "70000", "70000"),
    (["serve", "-c", "{d}"], "--max-wait-ms", "inf", "inf"),
    (["serve", "-c", "{d}"], "--timeout", "nan", "nan"),
    (["serve", "-c", "{d}"], "--queue-size", "0", "0"),
    (["serve", "-c", "{d}"], "--log-level", "loud", "'loud'"),
    (["predict", "-c", "{d}", "-i", "{d}", "-o", "{d}/p.jsonl"], "--lang", "fr", "'fr'"),
    (["model", "tiny", "{d}/o"], "--hidden", "0", "0"),
    (["model", "tiny", "{d}/o"], "--heads", "0", "0"),
]


@pytest.mark.parametrize(("command", "option", "value", "shown"), BAD_OPTIONS,
                         ids=[f"{' '.join(c[:2] if c[0] in ('data', 'fewshot', 'doctor', 'model') else c[:1])} {o} {v}"
                              for c, o, v, _ in BAD_OPTIONS])
def test_an_out_of_range_option_is_a_usage_error_naming_it_and_the_value(tmp_path, command, option, value, shown):
    args = [a.format(d=tmp_path) for a in command] + [option, value]
    usage_error(invoke(args), f"'{option}'", f"got {shown}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a refused command wrote something"


def _commands(group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,), command


# Any integer is a valid seed, and a decoder layer may be counted from the end (-1 = the last; the library checks
# it against the checkpoint's depth).
UNBOUNDED = {"--seed", "--layer"}


def test_every_numeric_option_of_every_command_checks_its_range():
    unchecked = []
    for path, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            kind = param.type_descriptor.annotation
            numeric = kind in (int, float) or set(typing.get_args(kind)) & {int, float}
            if numeric and param.callback is None and not set(param.opts) & UNBOUNDED:
                unchecked.append(f"{' '.join(path)} {'/'.join(param.opts)}")
    assert not unchecked, f"numeric options without a range check: {unchecked}"


def test_the_range_checks_refuse_what_typer_lets_through():
    from bbuvl.cli.common import finite_range, int_range

    with pytest.raises(typer.BadParameter, match="finite number >= 0, got inf"):
        finite_range(0)(math.inf)
    with pytest.raises(typer.BadParameter, match=r"in \(0, 1\], got 0"):
        finite_range(0, 1, lo_open=True)(0.0)
    with pytest.raises(typer.BadParameter, match=r"in \[0, 1\), got 1"):
        finite_range(0, 1, hi_open=True)(1.0)
    with pytest.raises(typer.BadParameter, match=r"whole number in \[0, 65535\], got 65536"):
        int_range(0, 65535)(65536)
    assert finite_range(0, 1, lo_open=True)(1.0) == 1.0 and int_range(1)(None) is None


# --- config fields and overrides --------------------------------------------------------------------


def _constrained_fields(model: type[BaseModel] = Config, prefix: str = ""):
    """(dotted key, a value just outside its bounds) for every numeric field with a bound, walking sections."""
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _constrained_fields(ann, f"{prefix}{name}.")
            continue
        for bound in field.metadata:
            for attr, outside in (("gt", lambda b: b), ("ge", lambda b: b - 1), ("lt", lambda b: b), ("le", lambda b: b + 1)):
                if getattr(bound, attr, None) is not None:
                    yield f"{prefix}{name}", outside(getattr(bound, attr))


def _numeric_fields(model: type[BaseModel] = Config, prefix: str = ""):
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _numeric_fields(ann, f"{prefix}{name}.")
        elif ann in (int, float) or set(typing.get_args(ann)) & {int, float}:
            yield f"{prefix}{name}", field


@pytest.mark.parametrize(("key", "value"), list(_constrained_fields()))
def test_a_config_value_outside_its_bounds_is_refused_naming_the_override(key, value):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"{key}={value}"])
    assert f"{key}={value} (override): '{key}'" in str(e.value), str(e.value)
    assert f"got {value}" in str(e.value), str(e.value)


# Bounded by a validator of its own (tested below), not by Field bounds.
VALIDATED_ELSEWHERE = {"training.max_steps"}


def test_every_numeric_config_field_has_a_bound():
    unbounded = [key for key, field in _numeric_fields() if key not in VALIDATED_ELSEWHERE
                 and not any(getattr(m, a, None) is not None for m in field.metadata for a in ("gt", "ge", "lt", "le"))]
    assert not unbounded, f"numeric config fields without bounds: {unbounded}"


@pytest.mark.parametrize("key", [k for k, f in _numeric_fields() if f.annotation is float or float in typing.get_args(f.annotation)])
def test_nan_is_refused_in_every_float_field(key):
    with pytest.raises(ConfigError, match=re.escape(f"{key}=.nan (override): '{key}' must be a finite number, got nan")):
        load_config(None, [f"{key}=.nan"])


@pytest.mark.parametrize("steps", ["0", "-2"])
def test_max_steps_zero_or_below_minus_one_is_refused(steps):
    with pytest.raises(ConfigError, match=rf"training.max_steps={steps} \(override\).*-1 \(train num_epochs\) or a "
                                          rf"positive number of steps, got {steps}"):
        load_config(None, [f"training.max_steps={steps}"])
    assert load_config(None, ["training.max_steps=-1"]).training.max_steps == -1
    assert load_config(None, ["training.max_steps=3"]).training.max_steps == 3


def test_an_override_error_names_the_override_not_a_line_of_the_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("training:\n  output_dir: out\n  max_steps: 5\n", encoding="utf-8")
    r = invoke(["config", "check", str(config), "training.max_steps=0"])
    text = usage_error(r, "training.max_steps=0 (override): 'training.max_steps'", "got 0")
    assert "run.yaml" not in text
    # The same mistake in the file is blamed on its line.
    config.write_text("training:\n  output_dir: out\n  max_steps: 0\n", encoding="utf-8")
    usage_error(invoke(["config", "check", str(config)]), "run.yaml:3: 'training.max_steps'")
    # A later override replaces an earlier one: only the last counts.
    assert invoke(["config", "check", str(config), "training.max_steps=0", "training.max_steps=4"]).exit_code == 0


@pytest.mark.parametrize("override", ["=3", "training..seed=1", ".seed=1"])
def test_an_override_without_a_dotted_key_is_refused(override):
    with pytest.raises(ConfigError, match=f"override '{override}': .* is not a dotted key"):
        load_config(None, [override])


ALL_ZERO = [f"training.lr.{g}=0" for g in LearningRates.model_fields]


def test_all_learning_rates_zero_is_refused_before_training(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"training:\n  output_dir: {tmp_path / 'run'}\n", encoding="utf-8")
    r = invoke(["train", str(config), *ALL_ZERO])
    usage_error(r, "training.lr.vision=0", "(overrides): 'training.lr': every group's learning rate is 0")
    assert "empty parameter list" not in r.output and not (tmp_path / "run").exists()


def test_a_positive_learning_rate_on_a_group_the_model_lacks_trains_nothing_and_says_so():
    from bbuvl.train.param_groups import ParameterGroupError, freeze_zero_lr_groups, optimizer_groups

    class HeadOnly(torch.nn.Module):  # the parameters a model with only a detection head would have
        def __init__(self) -> None:
            super().__init__()
            self.detection_head = torch.nn.Linear(4, 4)

    model, lr = HeadOnly(), LearningRates(vision=0, merger=0, llm=1e-5, detection=0, adapter=0)
    freeze_zero_lr_groups(model, lr)
    with pytest.raises(ParameterGroupError, match=r"nothing to train: .*\(training.lr.llm\) have no trainable parameters"):
        optimizer_groups(model, lr, 0.0)
    assert optimizer_groups(HeadOnly(), LearningRates(), 0.0)  # with its own group learning, it trains


# --- a mode the checkpoint cannot run: refused up front, in predict as in serve ---------------------


@pytest.fixture(scope="module")
def headless_checkpoint(tiny_model_dir, tmp_path_factory) -> Path:
    """A checkpoint saved without a detection head (detection.enabled: false)."""
    from bbuvl.model.checkpoint import Prompt, save_checkpoint
    from bbuvl.model.loading import load_model_and_processor
    from bbuvl.model.vlm import BBUVLModel

    vlm, processor = load_model_and_processor(str(tiny_model_dir), dtype="float32", attn_implementation="sdpa")
    cfg = load_config(None, [f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544",
                             "model.max_pixels=50176", "detection.enabled=false"])
    prompt = Prompt("Find the objects.", ["螺丝"], "zh")
    root = tmp_path_factory.mktemp("headless")
    return save_checkpoint(BBUVLModel.build(vlm, cfg, processor.tokenizer), processor, cfg,
                           cfg.model.frame(), prompt, root / "ckpt")  # the frame of the family trained, as train saves it


@pytest.mark.parametrize("mode", ["head", "name"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_in_a_head_mode_on_a_headless_checkpoint_is_refused_before_any_photo(headless_checkpoint, tmp_path, mode):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 48), (40 * i, 90, 120)).save(photos / f"{i}.png")
    out = tmp_path / "pred.jsonl"
    r = invoke(["predict", "-c", str(headless_checkpoint), "-i", str(photos), "-o", str(out), "--mode", mode,
                "--device", "cpu"])
    usage_error(r, f"mode '{mode}' needs a checkpoint with a detection head")
    assert "done" not in r.output
    lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
    assert not [line for line in lines if json.loads(line).get("image")], "photos were attempted one by one"


def test_serve_and_predict_refuse_a_head_mode_with_one_check(headless_checkpoint):
    from bbuvl.infer.predictor import Predictor
    from bbuvl.serve.engine import Engine

    predictor = Predictor.load(headless_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="mode 'head' needs a checkpoint with a detection head") as serve_error:
        Engine(predictor, "head", "ckpt")
    with pytest.raises(ValueError) as predict_error:
        predictor.predict_lines(["any.png"], mode="head")
    assert str(serve_error.value) == str(predict_error.value)
    Engine(predictor, "generate", "ckpt")  # what it can run, it runs


# --- eval with nothing to score ---------------------------------------------------------------------


@pytest.fixture()
def ground_truth(small_dataset) -> Path:
    return small_dataset / "val.jsonl"


def _eval(gt: Path, pred: Path, out: Path):
    return invoke(["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(out)])


def test_eval_of_an_empty_predictions_file_is_an_error_saying_so(ground_truth, tmp_path):
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n", encoding="utf-8")
    usage_error(_eval(ground_truth, pred, tmp_path / "m.json"), f"{pred}: no prediction lines (the file is empty)")
    assert not (tmp_path / "m.json").exists()


def test_eval_of_predictions_for_other_photos_is_an_error_saying_none_pair(ground_truth, tmp_path):
    pred = tmp_path / "pred.jsonl"
    lines = [{"image": f"/elsewhere/other_{i}.jpg", "width": 64, "height": 48, "objects": [], "raw": "[]", "error": None}
             for i in range(2)]
    pred.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    text = usage_error(_eval(ground_truth, pred, tmp_path / "m.json"),
                       "pred.jsonl:1: no prediction line names a photo of", "none of its 2",
                       "/elsewhere/other_0.jpg")
    assert "empty" not in text
    assert not (tmp_path / "m.json").exists()


def test_eval_against_a_ground_truth_without_photos_is_an_error(ground_truth, tmp_path):
    gt = tmp_path / "gt.jsonl"
    gt.write_text("", encoding="utf-8")
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"image": "a.jpg", "objects": []}) + "\n", encoding="utf-8")
    usage_error(_eval(gt, pred, tmp_path / "m.json"), "the ground truth has no photos")


# --- a command given no photos: an error, not "0 done" -----------------------------------------------


@pytest.mark.parametrize("command", [
    ["data", "teachers", "{empty}", "{d}/out/teachers.jsonl"],
    ["data", "split", "{empty}", "{d}/out"],
    ["data", "export-coco", "{empty}", "{d}/out/coco.json"],
    ["data", "stats", "{empty}"],
    ["viz", "{empty}", "{d}/out"],
])
def test_a_dataset_command_on_an_empty_file_is_an_error_naming_it(tmp_path, command):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    r = invoke([a.format(empty=empty, d=tmp_path) for a in command])
    usage_error(r, f"{empty}: no photos: the file is empty")
    assert not (tmp_path / "out").exists()


def test_fewshot_classify_of_a_folder_without_images_is_an_error_before_writing(tmp_path):
    support = tmp_path / "support" / "螺丝"
    support.mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 0, 0)).save(support / "0.png")
    queries = tmp_path / "queries"
    queries.mkdir()
    (queries / "notes.txt").write_text("no photos here", encoding="utf-8")
    out = tmp_path / "answers.csv"
    r = invoke(["fewshot", "classify", "--support", str(tmp_path / "support"), "--query", str(queries),
                "--backbone", "pixels", "--out", str(out), "--no-cache"])
    usage_error(r, f"{queries}: no query images in this folder")
    assert not out.exists()


def test_doctor_landscape_refuses_an_unknown_group_before_loading_the_checkpoint(tmp_path):
    # The checkpoint folder does not exist: the group is checked first, so the error is about the group.
    r = invoke(["doctor", "landscape", str(tmp_path / "no-such-checkpoint"), str(tmp_path / "d.jsonl"),
                "--groups", "detection,heads"])
    usage_error(r, "unknown group(s) heads; choose from vision, merger, llm, detection, adapter")


def test_doctor_memory_in_head_mode_on_a_headless_checkpoint_is_refused_before_any_iteration(headless_checkpoint, tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (64, 48), (10, 90, 160)).save(image)
    r = invoke(["doctor", "memory", str(headless_checkpoint), "--mode", "head", "--images", str(image), "--n", "5",
                "--device", "cpu", "--out", str(tmp_path / "memory.png")])
    usage_error(r, "mode 'head' needs a checkpoint with a detection head")
    assert not (tmp_path / "memory.png").exists()


@pytest.mark.parametrize("command", ["features", "attention"])
def test_doctor_looking_inside_the_head_of_a_headless_checkpoint_is_refused_naming_it(headless_checkpoint, tmp_path,
                                                                                      command):
    image = tmp_path / "a.png"
    Image.new("RGB", (64, 48), (10, 90, 160)).save(image)
    # features reads its --data before the checkpoint loads: a dataset listing the photo, so the checkpoint is reached
    (tmp_path / "d.jsonl").write_text(json.dumps({"images": ["a.png"], "width": 64, "height": 48, "objects": []}) + "\n",
                                      encoding="utf-8")
    args = ["--data", str(tmp_path / "d.jsonl")] if command == "features" else [str(image)]
    r = invoke(["doctor", command, str(headless_checkpoint), *args, "--device", "cpu", "--out", str(tmp_path / "d.png")])
    usage_error(r, f"{headless_checkpoint}: this checkpoint has no detection head (detection.enabled was false): "
                   f"`bbuvl doctor {command}` looks inside one")
    assert not (tmp_path / "d.png").exists()


@pytest.mark.parametrize("given", ["folder", "jsonl"])
def test_predict_on_an_input_without_photos_is_an_error_not_zero_predicted(headless_checkpoint, tmp_path, given):
    source = tmp_path / "photos"
    source.mkdir()
    (source / "notes.txt").write_text("no photos here", encoding="utf-8")
    if given == "jsonl":
        source = tmp_path / "empty.jsonl"
        source.write_text("\n", encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    r = invoke(["predict", "-c", str(headless_checkpoint), "-i", str(source), "-o", str(out), "--mode", "generate",
                "--device", "cpu"])
    usage_error(r, f"{source}: no photos")
    assert "done" not in r.output and not out.exists()


def test_data_check_of_an_empty_file_is_an_error_not_ok(tmp_path):
    empty = tmp_path / "train.jsonl"
    empty.write_text("\n", encoding="utf-8")
    r = invoke(["data", "check", str(empty)])
    assert r.exit_code != 0 and "no photos: the file is empty" in " ".join(r.output.split()), r.output
