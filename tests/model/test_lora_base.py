"""A LoRA checkpoint is applied only to the base model its adapters trained on (model/lora_base.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.model.checkpoint import CheckpointError, check_lora_base, load_model
from bbuvl.model.identity import record_digests
from bbuvl.model.lora_base import BASE_FILE, base_fingerprint
from bbuvl.train.trainer import train
from tests.lora_runs import one_step_lora


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir, small_dataset) -> tuple[Path, Path]:
    """(the run folder, its base) of a one-step LoRA run with checkpoint-1 and final/, trained once per module."""
    from bbuvl.config import load_config

    root = tmp_path_factory.mktemp("lora")
    base = shutil.copytree(tiny_model_dir, root / "base")
    cfg = load_config(None, one_step_lora(base, small_dataset, root / "run", save_steps=1))
    train(cfg, progress=False)
    return root / "run", base


@pytest.fixture()
def copied(lora_run, tmp_path) -> tuple[Path, Path]:
    """This test's own copy of the run and its base, the checkpoints pointing at the copied base."""
    run, base = lora_run
    shutil.copytree(base, tmp_path / "base")
    shutil.copytree(run, tmp_path / "run")
    for yaml in (tmp_path / "run").glob("*/bbuvl.yaml"):
        yaml.write_text(yaml.read_text(encoding="utf-8").replace(str(base), str(tmp_path / "base")), encoding="utf-8")
    for record in (tmp_path / "run").glob("run.json"):
        record.write_text(record.read_text(encoding="utf-8").replace(str(base), str(tmp_path / "base")), encoding="utf-8")
    return tmp_path / "run", tmp_path / "base"


def replace_weights(base: Path) -> None:
    """The base folder replaced in place by another fine-tune of the same model: same config, files and sizes."""
    weights = base / "model.safetensors"
    tensors = {k: v + 0.01 if v.is_floating_point() else v for k, v in load_file(weights).items()}
    weights.unlink()
    save_file(tensors, weights, metadata={"format": "pt"})


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_lora_run_records_a_fingerprint_of_its_base_in_every_checkpoint(lora_run):
    run, base = lora_run
    for ckpt in (run / "checkpoint-1", run / "final"):
        record = json.loads((ckpt / BASE_FILE).read_text(encoding="utf-8"))
        assert record["base"] == str(base) and set(record["fingerprint"]) == {"config.json", "model.safetensors"}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_base_replaced_in_place_is_refused_by_load_merge_and_export_naming_both(copied, tmp_path):
    run, base = copied
    replace_weights(base)
    with pytest.raises(CheckpointError, match=r"LoRA adapters were trained on another base model than the one now at "
                                              r".*base .*model.safetensors differs"):
        load_model(run / "final")
    for command in (["merge-lora"], ["export"]):
        r = invoke("model", *command, run / "final", tmp_path / "out")
        text = " ".join(r.output.split())
        assert r.exit_code == 2 and f"{run / 'final'}: its LoRA adapters" in text and f"now at {base}" in text, r.output
        assert "--accept-base" in text and not (tmp_path / "out").exists()
    r = invoke("model", "merge-lora", run / "final", tmp_path / "out", "--accept-base")
    assert r.exit_code == 0, r.output
    assert "merged" in r.output and not (tmp_path / "out" / BASE_FILE).exists()  # merged: no base left to check


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_same_base_copied_again_loads_and_a_checkpoint_without_a_fingerprint_loads_as_before(copied, tmp_path):
    run, base = copied
    base.rename(tmp_path / "old")
    shutil.copytree(tmp_path / "old", base, copy_function=shutil.copyfile)  # new files, new times, the same bytes
    load_model(run / "final")
    replace_weights(base)
    (run / "final" / BASE_FILE).unlink()
    # Lost from a copy (its content_digest.json records it): the base cannot be checked, and is refused, naming the file
    with pytest.raises(CheckpointError, match=f"{BASE_FILE}: missing, though training saved it"):
        load_model(run / "final")
    record_digests(run / "final")  # as a checkpoint saved before fingerprints were recorded: none to check against
    load_model(run / "final")


def test_a_lora_checkpoint_that_lost_the_fingerprint_training_recorded_is_refused_naming_it(tmp_path):
    # Before: taken for a checkpoint saved before fingerprints, its base went unchecked: adapters over a base replaced
    # since answered wrongly without a word (predict, serve, export and merge-lora all load through check_lora_base).
    checkpoint, base = tmp_path / "final", tmp_path / "base"
    checkpoint.mkdir()
    base.mkdir()
    (base / "config.json").write_text("{}", encoding="utf-8")
    (checkpoint / BASE_FILE).write_text(json.dumps({"base": str(base), "fingerprint": base_fingerprint(base)}),
                                        encoding="utf-8")
    record_digests(checkpoint)
    check_lora_base(checkpoint, base)  # the same base: loads
    (checkpoint / BASE_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"{checkpoint / BASE_FILE}: missing, though training saved it "
                                              r"\(content_digest.json records it\).* --accept-base"):
        check_lora_base(checkpoint, base)
    record_digests(checkpoint)  # a checkpoint that never had one (saved before fingerprints): not checked, as before
    check_lora_base(checkpoint, base)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_resuming_a_run_without_a_record_onto_a_replaced_base_is_refused(copied, tmp_path):
    from bbuvl.train.run_record import CHECKPOINT_RECORD

    run, base = copied
    (run / "run.json").unlink()  # the record lost: the checkpoint's copy of it compares the base by content
    replace_weights(base)
    config = run / "checkpoint-1" / "bbuvl.yaml"
    r = invoke("train", config, f"training.output_dir={run}", "training.max_steps=2", "--resume")
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and f"{run / 'checkpoint-1' / CHECKPOINT_RECORD} (what the run was started with" in text
    assert "model.path" in text and "its content changed" in text, r.output
    (run / "checkpoint-1" / CHECKPOINT_RECORD).unlink()  # a run from before records: its bbuvl.yaml compares paths only
    r = invoke("train", config, f"training.output_dir={run}", "training.max_steps=2", "--resume")
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and f"{run / 'checkpoint-1'}: its LoRA adapters were trained on another base" in text, r.output
    assert not (run / "checkpoint-2").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_merge_into_a_relative_folder_records_where_the_merged_model_is(lora_run, tmp_path, monkeypatch):
    from bbuvl.config import read_run_config
    from bbuvl.paths import real_path

    run, _ = lora_run
    monkeypatch.chdir(tmp_path)
    r = invoke("model", "merge-lora", run / "final", "merged")
    assert r.exit_code == 0, r.output
    # As typed ('merged'), the merged checkpoint's model.path named another folder to any command run elsewhere.
    assert read_run_config(tmp_path / "merged").model.path == str(real_path(tmp_path / "merged"))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_merge_carries_the_choices_it_read_at_its_start_not_those_chosen_while_it_saved(lora_run, tmp_path,
                                                                                         monkeypatch):
    # `eval --choose-thresholds` and `choose-tiles` write beside a checkpoint being read (outputs.CHOICE_FILES): a
    # merge copied the checkpoint's chosen files once its weights had loaded (minutes on a real model), so one chosen
    # meanwhile was carried, a tile scale of one choice beside thresholds of another (model/identity.py
    # `taken_choices`, as `model export` does).
    from dataclasses import replace

    from peft.tuners.tuners_utils import BaseTuner

    from bbuvl.infer.tile_scale import ChosenTileScale
    from bbuvl.infer.verdict import ChosenThresholds, VerdictThresholds

    run, _ = lora_run
    checkpoint = shutil.copytree(run / "final", tmp_path / "ckpt")
    chosen = ChosenThresholds(VerdictThresholds(0.3, 0.6), 0.9, 0.9, 1.0, 1.0, 2, 1, [], "val.jsonl", mode="generate")
    chosen.save(checkpoint)
    scale = ChosenTileScale(0.5, "AP50", 1.0, [], 2, "wide.jsonl")
    scale.save(checkpoint)
    merge = BaseTuner.merge_and_unload

    def chosen_meanwhile(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - peft's own signature
        ChosenThresholds(VerdictThresholds(0.1, 0.2), 0.9, 0.9, 1.0, 1.0, 2, 1, [], "val.jsonl",
                         mode="head").save(checkpoint)
        ChosenTileScale(2.0, "AP50", 1.0, [], 2, "other.jsonl").save(checkpoint)
        return merge(self, *args, **kwargs)

    monkeypatch.setattr(BaseTuner, "merge_and_unload", chosen_meanwhile)
    r = invoke("model", "merge-lora", checkpoint, tmp_path / "merged")
    assert r.exit_code == 0, r.output
    assert replace(ChosenThresholds.load(tmp_path / "merged"), model=None) == replace(chosen, model=None)
    assert replace(ChosenTileScale.load(tmp_path / "merged"), model=None) == replace(scale, model=None)
    assert ChosenThresholds.load(checkpoint).mode == "head"  # the new choice stays the checkpoint's
