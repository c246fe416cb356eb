"""A full fine-tune's checkpoints hold every weight, its model's config and its processor: resuming one whose model.path
was deleted since failed with 'no such folder (the model ...)', though nothing of that folder was needed. A LoRA
run's checkpoints hold only adapters: its resume names the base they need."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bbuvl.config import Config
from bbuvl.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_thread")


def started(run_config, tiny_model_dir: Path, tmp_path: Path, *overrides: str) -> Config:
    """A 1-step run saving checkpoint-1, from a copy of the tiny model at tmp_path/base (deleted by the tests)."""
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    cfg = run_config(f"model.path={base}", "training.max_steps=1", "training.save_steps=1", "data.val=null", *overrides)
    train(cfg, progress=False)
    return cfg


def resumed(cfg: Config, out: Path) -> Path:
    """The run in `out` resumed to step 2; its final/."""
    cfg = cfg.model_copy(deep=True)
    cfg.training.output_dir, cfg.training.max_steps = str(out), 2
    return Path(train(cfg, resume=True, progress=False)["final"])


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """The VLM's and the head's tensors of a checkpoint."""
    return load_file(folder / "model.safetensors") | {f"head.{k}": v for k, v in
                                                        load_file(folder / "detection_head.safetensors").items()}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_full_fine_tune_resumes_from_its_checkpoint_when_its_base_folder_is_gone(run_config, tiny_model_dir, tmp_path):
    # One run started and resumed with its base, two copies of it resumed without: deleted, then a base folder's link
    # whose target was removed or unmounted
    cfg = started(run_config, tiny_model_dir, tmp_path)
    ways = ("deleted", "a link to nothing")
    for gone in ways:
        shutil.copytree(cfg.training.output_dir, tmp_path / gone)
    with_base = weights(resumed(cfg, Path(cfg.training.output_dir)))

    shutil.rmtree(cfg.model.path)
    for gone in ways:
        if gone == "a link to nothing":
            Path(cfg.model.path).symlink_to(tmp_path / "unmounted")
        final = resumed(cfg, tmp_path / gone)
        without = weights(final)
        assert with_base.keys() == without.keys(), gone
        assert all(torch.equal(with_base[k], without[k]) for k in with_base), gone
        # The run still records the base it started from, not the checkpoint it was rebuilt from.
        assert f"path: {cfg.model.path}\n" in (final / "bbuvl.yaml").read_text("utf-8"), gone


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_lora_run_whose_base_folder_is_gone_names_it_on_resume(run_config, tiny_model_dir, tmp_path):
    cfg = started(run_config, tiny_model_dir, tmp_path, "model.lora.enabled=true", "model.lora.r=4")
    shutil.rmtree(cfg.model.path)
    before = sorted(p.name for p in Path(cfg.training.output_dir).iterdir())
    with pytest.raises(ValueError, match=rf"model.path {cfg.model.path}: no such folder, and this LoRA run's "
                                         "checkpoints hold only its adapters"):
        resumed(cfg, Path(cfg.training.output_dir))
    assert sorted(p.name for p in Path(cfg.training.output_dir).iterdir()) == before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_full_fine_tune_whose_base_is_gone_and_whose_only_checkpoint_is_half_saved_names_both(run_config,
                                                                                               tiny_model_dir, tmp_path):
    """A save killed half-way (no trainer_state.json) and a base deleted since: the resume named the base alone."""
    from bbuvl.train.run_dir import RunDirError

    cfg = started(run_config, tiny_model_dir, tmp_path)
    shutil.rmtree(cfg.model.path)
    (Path(cfg.training.output_dir) / "checkpoint-1" / "trainer_state.json").unlink()
    with pytest.raises(RunDirError, match=rf"model.path {cfg.model.path}: no such folder, and no complete checkpoint "
                                          rf"stands in for it \(training.output_dir .*: checkpoint-1: no trainer_state"):
        resumed(cfg, Path(cfg.training.output_dir))
    with pytest.raises(RunDirError, match=r"no complete checkpoint stands in for it \(--resume-from .*checkpoint-1: no "
                                          "trainer_state"):
        train(cfg.model_copy(update={"training": cfg.training.model_copy(update={"max_steps": 2})}),
              resume=str(Path(cfg.training.output_dir) / "checkpoint-1"), progress=False)


def test_a_resume_into_a_folder_that_does_not_exist_with_its_base_gone_says_both(run_config, tmp_path):
    from bbuvl.train.run_dir import RunDirError

    cfg = run_config(f"model.path={tmp_path / 'base'}", f"training.output_dir={tmp_path / 'typo'}")
    with pytest.raises(RunDirError, match=rf"model.path {tmp_path / 'base'}: no such folder, and no complete checkpoint "
                                          rf"stands in for it \(training.output_dir {tmp_path / 'typo'} does not exist\)"):
        train(cfg, resume=True, progress=False)
    assert not (tmp_path / "typo").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_full_fine_tune_from_a_folder_named_as_a_hub_id_could_be_resumes_when_it_is_gone(run_config, tiny_model_dir,
                                                                                          tmp_path, monkeypatch):
    """configs/demo.yaml's `demo_out/tiny-model` is spelled as a hub id could be (owner/name): its run record, which
    hashed a folder there, says it was one."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "demo_out" / "tiny-model")
    cfg = run_config("model.path=demo_out/tiny-model", "training.max_steps=1", "training.save_steps=1", "data.val=null")
    train(cfg, progress=False)
    shutil.rmtree(tmp_path / "demo_out")
    final = resumed(cfg, Path(cfg.training.output_dir))
    assert "path: demo_out/tiny-model\n" in (final / "bbuvl.yaml").read_text("utf-8")
