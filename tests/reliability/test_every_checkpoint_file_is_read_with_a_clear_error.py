"""Class 7: every file of a checkpoint is read with an error naming the file and what is wrong in it.

Each case damages one file of a copy of a trained checkpoint the way a hand edit or a bad copy does; reading the
folder (or loading it, for the weights) must raise a ValueError naming that file, never a traceback from HF or
torch, and `bbuvl predict` must say it in one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from bbuvl.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    write_json(path, change(json.loads(path.read_text(encoding="utf-8"))))


def edit_tensors(path: Path, change: Callable[[dict], None]) -> None:
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def first(tensors: dict) -> str:
    return sorted(tensors)[0]


# (what is wrong, the file, how to damage it, what the error must say) -- found when the folder is read.
READ = [
    ("prompt is a list", "prompt.json", lambda p: write_json(p, ["a"]), "holds an array, expected a JSON object"),
    ("prompt has an unknown key", "prompt.json", lambda p: edit_json(p, lambda d: d | {"colour": 1}), "unknown key 'colour'"),
    ("prompt lacks labels", "prompt.json", lambda p: edit_json(p, lambda d: {k: v for k, v in d.items() if k != "labels"}),
     "missing 'labels'"),
    ("labels a string", "prompt.json", lambda p: edit_json(p, lambda d: d | {"labels": "abc"}), "'labels' must be a JSON list"),
    ("a label a number", "prompt.json", lambda p: edit_json(p, lambda d: d | {"labels": [1]}), "non-empty strings, got 1"),
    ("an empty label", "prompt.json", lambda p: edit_json(p, lambda d: d | {"labels": [" "]}), "non-empty strings"),
    ("lang fr", "prompt.json", lambda p: edit_json(p, lambda d: d | {"lang": "fr"}), "'lang' must be one of zh, en"),
    ("system a number", "prompt.json", lambda p: edit_json(p, lambda d: d | {"system": 3}), "'system' must be a JSON string"),
    ("prompt cut short", "prompt.json", lambda p: p.write_text('{"system": "', encoding="utf-8"), "not valid JSON"),
    ("config.json a list", "config.json", lambda p: write_json(p, [1]), "holds an array, expected a JSON object"),
    ("config.json cut short", "config.json", lambda p: p.write_text("{", encoding="utf-8"), "not valid JSON"),
    ("tokenizer.json cut short", "tokenizer.json", lambda p: p.write_text('{"model": ', encoding="utf-8"), "not valid JSON"),
    ("processor config a list", "processor_config.json", lambda p: write_json(p, [1]), "holds an array, expected a JSON object"),
    ("generation config not UTF-8", "generation_config.json", lambda p: p.write_bytes(b"\xff\xfe{"), "not UTF-8"),
    ("contract a list", "coordinate_contract.json", lambda p: write_json(p, [1]), "holds an array, expected a JSON object"),
    ("contract has an unknown key", "coordinate_contract.json", lambda p: edit_json(p, lambda d: d | {"x": 1}),
     "unknown key 'x'"),
    ("chat template broken", "chat_template.jinja", lambda p: p.write_text("{% if %}", encoding="utf-8"),
     "not a valid chat template"),
    # transformers' JSON reader raised "Exceeds the limit (4300 digits)", naming no file, once the weights had loaded
    ("a number of 5,000 digits", "generation_config.json",
     lambda p: p.write_text('{\n"max_length": ' + "9" * 5000 + "\n}", encoding="utf-8"),
     "line 2: a number of more than 4,300 digits"),
    ("a number past Python's limit in the processor", "preprocessor_config.json",
     lambda p: p.write_text('{"size": ' + "1" * 4301 + "}", encoding="utf-8"), "line 1: a number of more than"),
]


@pytest.fixture()
def copy(trained_checkpoint, tmp_path) -> Path:
    out = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, out)
    return out


@pytest.mark.parametrize(("name", "damage", "says"), [c[1:] for c in READ], ids=[c[0] for c in READ])
def test_a_damaged_file_is_named_when_the_checkpoint_is_read(copy, name, damage, says):
    from bbuvl.model.checkpoint import read_model_folder

    damage(copy / name)
    with pytest.raises(ValueError) as e:
        read_model_folder(copy)
    assert name in str(e.value) and says in str(e.value), str(e.value)


# Found when the modules are loaded: what the tensors must be depends on the config that builds the module.
LOAD = [
    ("head tensor of another shape", "detection_head.safetensors",
     lambda t: t.__setitem__(first(t), torch.zeros(3, 3)), "of another shape"),
    ("head tensor missing", "detection_head.safetensors", lambda t: t.pop(first(t)), "1 tensor missing"),
    ("head tensor unknown", "detection_head.safetensors", lambda t: t.__setitem__("extra.weight", torch.zeros(2)),
     "1 unknown tensor (extra.weight)"),
    ("head tensor NaN", "detection_head.safetensors", lambda t: t[first(t)].fill_(float("nan")), "not finite"),
    ("a VLM weight of another shape", "model.safetensors", lambda t: t.__setitem__(first(t), torch.zeros(3, 3)),
     "has another shape than its config.json builds"),
    ("vision positions of another shape", "vision_positions.safetensors",
     lambda t: [t.__setitem__(k, torch.zeros(1)) for k in list(t)], "of another shape"),
]


@pytest.mark.parametrize(("name", "damage", "says"), [c[1:] for c in LOAD], ids=[c[0] for c in LOAD])
def test_a_module_file_that_does_not_fit_its_config_is_named_when_loaded(copy, name, damage, says):
    from bbuvl.model.checkpoint import CheckpointError, load_model

    edit_tensors(copy / name, damage)
    with pytest.raises(CheckpointError) as e:
        load_model(copy, device="cpu")
    assert (name in str(e.value) or name == "model.safetensors") and says in str(e.value), str(e.value)


def test_a_config_that_builds_another_head_than_the_saved_one_is_named(copy):
    from bbuvl.model.checkpoint import CheckpointError, load_model

    yaml = copy / "bbuvl.yaml"
    yaml.write_text(yaml.read_text(encoding="utf-8").replace("num_queries: 8", "num_queries: 16"), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"detection_head.safetensors: does not fit .*query_embed.weight is \[8, "):
        load_model(copy, device="cpu")


def test_predict_names_the_damaged_file_in_one_line_before_loading_weights(copy, small_dataset, tmp_path):
    write_json(copy / "prompt.json", ["a"])
    r = CliRunner().invoke(app, ["predict", "-c", str(copy), "-i", str(small_dataset / "val.jsonl"), "-o",
                                 str(tmp_path / "p.jsonl"), "--mode", "head", "--device", "cpu"], env={"COLUMNS": "300"})
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "prompt.json: holds an array, expected a JSON object" in " ".join(r.output.split())
