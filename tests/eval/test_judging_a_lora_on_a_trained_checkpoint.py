"""Predictions of a LoRA checkpoint whose base model is itself a trained checkpoint are judged by it (eval/judging.py):
its identity names the base's files `base/...` (model/identity.py), and a manifest an older bbuvl wrote, which named
them as the checkpoint's own, is refused saying so, where predicting again with --overwrite helps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.digests import FileDigest, combined
from tests.lora_runs import one_step_lora

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args) -> tuple[int, str]:
    r = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})
    return r.exit_code, " ".join(r.output.split())


@pytest.fixture(scope="module")
def lora_on_trained(trained_checkpoint, small_dataset, tmp_path_factory) -> Path:
    """final/ of a one-step LoRA run on the session's trained checkpoint, used where it was saved: its
    content_digest.json vouches for its files, as for any checkpoint a run trains on."""
    from bbuvl.config import load_config
    from bbuvl.train.trainer import train

    root = tmp_path_factory.mktemp("lora_on_trained")
    cfg = load_config(None, one_step_lora(trained_checkpoint, small_dataset, root / "run", save_steps=100))
    return Path(train(cfg, progress=False)["final"])


def predict(ckpt: Path, gt: Path, out: Path, *extra: str) -> None:
    code, said = invoke("predict", "-c", ckpt, "-i", gt, "-o", out, "--mode", "head", "--device", "cpu", *extra)
    assert code == 0, said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predictions_of_a_lora_on_a_trained_checkpoint_are_evaluated(lora_on_trained, trained_checkpoint, small_dataset,
                                                                     tmp_path):
    gt, out = small_dataset / "val.jsonl", tmp_path / "p.jsonl"
    predict(lora_on_trained, gt, out)
    # Before: the base's config.json, model.safetensors ... were recorded under the checkpoint's own names, and eval
    # refused every such file as "(removed)" from the LoRA checkpoint, however often it was predicted again.
    names = [f["name"] for f in json.loads(Path(f"{out}.predict.json").read_text("utf-8"))["key"]["checkpoint_files"]]
    assert len(names) == len(set(names)) and "base/model.safetensors" in names and "model.safetensors" not in names
    assert "base/bbuvl.yaml" in names and "bbuvl.yaml" in names
    code, said = invoke("eval", "--pred", out, "--gt", gt, "--out", tmp_path / "m.json")
    assert code == 0, said
    assert "changed" not in said, said


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_manifest_whose_files_do_not_add_up_is_refused_saying_so_and_predicting_again_helps(
        lora_on_trained, small_dataset, tmp_path):
    gt, out = small_dataset / "val.jsonl", tmp_path / "p.jsonl"
    predict(lora_on_trained, gt, out)
    manifest = Path(f"{out}.predict.json")
    data = json.loads(manifest.read_text("utf-8"))
    files = data["key"]["checkpoint_files"]
    for f in files:  # as an older bbuvl recorded them: the base's trained files under the checkpoint's own names
        f["name"] = f["name"].removeprefix("base/")
    data["key"]["checkpoint"] = combined(FileDigest(**f) for f in files)  # its digest over those names, as it wrote it
    manifest.write_text(json.dumps(data), encoding="utf-8")
    code, said = invoke("eval", "--pred", out, "--gt", gt, "--out", tmp_path / "m.json")
    assert code == 2 and "do not add up to the model it records" in said and "predict --overwrite" in said, said
    assert "(removed)" not in said, said
    code, said = invoke("predict", "-c", lora_on_trained, "-i", gt, "-o", out, "--mode", "head", "--device", "cpu")
    assert code == 2 and "do not add up to the model recorded" in said and "--overwrite" in said, said
    predict(lora_on_trained, gt, out, "--overwrite")
    code, said = invoke("eval", "--pred", out, "--gt", gt, "--out", tmp_path / "m.json")
    assert code == 0, said
