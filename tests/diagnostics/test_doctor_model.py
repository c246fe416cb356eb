"""`doctor model`: the tiny checkpoint passes; a parameter outside every LR group, stored or in code, fails by name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText
from typer.testing import CliRunner

from bbuvl.cli.doctor import app
from bbuvl.config import load_config
from bbuvl.diagnostics.model_doctor import check_contract, check_groups, diagnose_model
from tests.model_folders import remove_file

pytestmark = pytest.mark.filterwarnings("ignore")

SRC = str(Path(__file__).resolve().parents[2] / "src")  # the code under test, for the command run in a shell
EXPECTED = ["saved files", "training losses", "parameter groups", "stored tensors", "finite weights", "language model",
            "special tokens", "image-pad tokens", "chat template", "tokenizer round trip", "detection head",
            "coordinate contract", "prompt labels"]


def test_tiny_checkpoint_passes_every_check(trained_checkpoint, tiny_family):
    report = diagnose_model(trained_checkpoint)
    assert [c.name for c in report.checks] == EXPECTED
    assert report.failed == [], report.failed
    assert all(report.groups[g].trainable > 0 for g in ("vision", "merger", "llm", "detection", "adapter"))
    assert report.groups["unassigned"].trainable == 0
    pads = next(c for c in report.checks if c.name == "image-pad tokens")
    # The run's first photo, 224x168: 8 x 6 merged patches of 28 px (Qwen2.5-VL), 7 x 5 of 32 px (the others).
    n = {"qwen2_5_vl": 48}.get(tiny_family, 35)
    assert f"contract {n}, processor pads {n}" in pads.detail
    checks = {c.name: c for c in report.checks}
    # final/ carries no trainer_state.json: its run's history.json beside it is read
    assert checks["training losses"].status == "ok"
    assert checks["training losses"].detail.endswith(f"({trained_checkpoint.parent / 'history.json'})")
    assert "finite, spread" in checks["language model"].detail


def test_checkpoint_with_a_stored_parameter_outside_all_groups_fails_naming_it(trained_checkpoint, tmp_path):
    broken = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, broken)
    vlm = AutoModelForImageTextToText.from_pretrained(str(broken))
    vlm.extra_gate = torch.nn.Parameter(torch.ones(4))  # e.g. a learnable gate added in a fork, saved with the model
    vlm.save_pretrained(str(broken))
    result = CliRunner().invoke(app, ["model", str(broken)], env={"COLUMNS": "400"})  # the table's cell unwrapped
    assert result.exit_code == 1, result.output
    # The table's cell as one string, however rich wrapped it (the width it reads depends on when it was imported)
    flat = "".join(c for c in result.output if not c.isspace() and c != "│")
    # Loading refuses it first, naming it (model/loading.py: weights that config.json's model does not have).
    assert "FAIL" in flat and "arenotinthemodelitsconfig.jsonbuilds(extra_gate)" in flat, result.output


def test_a_weight_holding_nan_fails_naming_the_tensor_and_the_changed_file(trained_checkpoint, tmp_path):
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, broken)
    weights = load_file(broken / "model.safetensors")
    name = sorted(weights)[0]
    weights[name].view(-1)[:3] = float("nan")  # what a flipped sign-and-exponent byte on disk reads as
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    report = diagnose_model(broken)
    checks = {c.name: c for c in report.checks}
    assert checks["finite weights"].status == "fail" and "(3 of " in checks["finite weights"].detail
    assert name.split(".")[-2] in checks["finite weights"].detail, checks["finite weights"].detail
    saved = checks["saved files"]
    assert saved.status == "fail" and "changed since training saved them: model.safetensors" in saved.detail, saved.detail
    (broken / "prompt.json").unlink()  # now it cannot load at all: the saved files still say what changed
    report = diagnose_model(broken)
    assert [c.name for c in report.checks] == ["saved files", "load"]
    assert "gone: prompt.json" in report.checks[0].detail and "model.safetensors" in report.checks[0].detail


def test_a_trainable_parameter_added_in_code_outside_all_groups_fails_naming_it(predictor):
    model = predictor.model
    model.loss_scale = torch.nn.Parameter(torch.ones(1))
    try:
        checks, summary = check_groups(model, predictor.cfg)
    finally:
        del model.loss_scale
    assert checks[0].status == "fail" and "loss_scale" in checks[0].detail
    assert summary["unassigned"].trainable == 1


def test_a_config_with_another_pixel_range_than_the_checkpoint_fails(predictor, trained_checkpoint):
    other = load_config(None, ["model.min_pixels=3136", "model.max_pixels=50176"])
    checks = check_contract(trained_checkpoint, predictor, other)
    assert [c.status for c in checks] == ["ok", "fail"] and "3136" in checks[-1].detail
    assert [c.status for c in check_contract(trained_checkpoint, predictor, predictor.cfg)] == ["ok"]


def test_a_missing_checkpoint_folder_fails_the_load_check_naming_it_once(tmp_path):
    missing = tmp_path / "nope"
    report = diagnose_model(missing, device="cpu")
    assert [(c.name, c.status, c.detail) for c in report.checks] == [("load", "fail", f"{missing}: no such checkpoint folder")]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_checkpoint_without_its_chat_template_fails_that_check_naming_the_file_and_runs_the_rest(trained_checkpoint,
                                                                                                  tmp_path):
    broken = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, broken)
    (broken / "chat_template.jinja").unlink()  # a copy that left it behind
    result = CliRunner().invoke(app, ["model", str(broken)])
    # Before: exit 2 and transformers' 'Cannot use apply_chat_template because this processor does not have a chat
    # template.', the other checks lost and no file named.
    assert result.exit_code == 1 and "1 check(s) failed: chat template" in " ".join(result.output.split()), result.output
    checks = diagnose_model(broken).checks  # the CLI's table wraps the detail's long path over its rows
    detail = next(c.detail for c in checks if c.name == "chat template")
    assert detail.startswith(f"{broken / 'chat_template.jinja'}: missing, so the processor has no chat template"), detail
    # a copy out of its run folder: no training losses to read
    left_out = ("image-pad tokens", "tokenizer round trip", "training losses")
    assert [c.name for c in checks] == [n for n in EXPECTED if n not in left_out]


@pytest.mark.parametrize("name", ["config.json", "preprocessor_config.json", "tokenizer_config.json"])
def test_a_checkpoint_missing_a_file_transformers_loads_fails_the_load_check_naming_it(trained_checkpoint, tmp_path, name):
    broken = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, broken)
    said = remove_file(broken, name)
    report = diagnose_model(broken)
    # Before: transformers' 'Unrecognized model ... Should have a `model_type` key', 'Can't load video processor' or
    # 'config and tokenizer disagree', none naming the file that is gone.
    assert [(c.name, c.status, c.detail) for c in report.checks][1:] == [
        ("load", "fail", f"{broken}: incomplete or damaged checkpoint ({said} missing); use another checkpoint or re-copy it")]
    assert report.checks[0].name == "saved files" and f"gone: {name} " in report.checks[0].detail


def test_a_head_file_the_config_does_not_load_is_a_warning_naming_the_file_and_the_key(trained_checkpoint, tmp_path):
    import yaml

    copy = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, copy)
    saved = yaml.safe_load((copy / "bbuvl.yaml").read_text(encoding="utf-8"))
    saved["detection"]["enabled"] = False  # an edit for a head-less run: generate mode reads no head
    (copy / "bbuvl.yaml").write_text(yaml.safe_dump(saved, allow_unicode=True), encoding="utf-8")
    checks = {c.name: c for c in diagnose_model(copy).checks}
    # Before: only "bbuvl.yaml changed since training saved it", the head file's being left out unsaid.
    said = checks["module files"]
    assert said.status == "warn" and said.detail.startswith(f"{copy / 'detection_head.safetensors'}: saved by training, "
                                                             f"but {copy / 'bbuvl.yaml'} sets detection.enabled false")
    assert "generate mode runs without the head" in said.detail


def test_vision_positions_the_config_does_not_load_fail_the_load_check_naming_the_file(trained_checkpoint, tmp_path):
    import yaml

    copy = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, copy)
    saved = yaml.safe_load((copy / "bbuvl.yaml").read_text(encoding="utf-8"))
    saved["model"]["vision_positions"] = False
    (copy / "bbuvl.yaml").write_text(yaml.safe_dump(saved, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(app, ["model", str(copy)], env={"COLUMNS": "400"})
    # Before: "all checks passed", exit 0, the trained positions not loaded.
    assert result.exit_code == 1, result.output
    flat = "".join(c for c in result.output if not c.isspace() and c != "│")
    assert "".join(f"{copy / 'vision_positions.safetensors'}: the checkpoint holds trained vision positions".split()) in flat


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_another_runs_contract_fails_naming_the_changed_file_and_the_frames_and_the_printed_record_command_runs(
        trained_checkpoint, tmp_path):
    import json
    import re
    import subprocess
    import sys

    copy = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, copy)
    contract = json.loads((copy / "coordinate_contract.json").read_text(encoding="utf-8"))
    theirs = {**contract, "min_pixels": 50176, "max_pixels": 50176, "max_vision_tokens": 64}  # another run's frame
    (copy / "coordinate_contract.json").write_text(json.dumps(theirs, indent=2) + "\n", encoding="utf-8")
    checks = {c.name: c for c in diagnose_model(copy).checks}
    # Before: two warnings and "all checks passed": predict then read every photo in the other run's frame.
    saved, own = checks["saved files"], checks["checkpoint config"]
    assert saved.status == "fail" and "changed since training saved them: coordinate_contract.json" in saved.detail
    assert own.status == "fail" and own.detail.startswith(f"{copy / 'bbuvl.yaml'}, the config the run trained with, has "
                                                          f"min_pixels={contract['min_pixels']}, ")
    assert f"{copy / 'coordinate_contract.json'}, the frame `bbuvl predict` reads, has min_pixels=50176, " in own.detail
    # A deliberate edit: the command the check prints records the files as they are, and the config check still
    # says that the checkpoint's two frames disagree.
    command = re.search(r"record the files as they are now: python -c (.*)$", saved.detail).group(1)
    subprocess.run(f"{sys.executable} -c {command}", shell=True, check=True, env={**os.environ, "PYTHONPATH": SRC})
    checks = {c.name: c for c in diagnose_model(copy).checks}
    assert checks["saved files"].status == "ok" and checks["checkpoint config"].status == "fail"


def test_a_checkpoint_whose_older_bbuvl_yaml_lacks_a_frame_key_is_compared_by_the_keys_it_holds(trained_checkpoint,
                                                                                                  tmp_path):
    import json

    import yaml

    copy = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, copy)
    saved = yaml.safe_load((copy / "bbuvl.yaml").read_text(encoding="utf-8"))
    contract = json.loads((copy / "coordinate_contract.json").read_text(encoding="utf-8"))
    del saved["model"]["max_vision_tokens"]  # written before the key existed: read back as today's default
    (copy / "bbuvl.yaml").write_text(yaml.safe_dump(saved, allow_unicode=True), encoding="utf-8")
    (copy / "coordinate_contract.json").write_text(json.dumps({**contract, "max_vision_tokens": 7}), encoding="utf-8")
    checks = {c.name: c for c in diagnose_model(copy).checks}
    assert "checkpoint config" not in checks, checks["checkpoint config"]
