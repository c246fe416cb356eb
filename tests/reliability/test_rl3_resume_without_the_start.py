"""A GRPO run resumed after its starting checkpoint (model.path) was deleted or moved: each of its checkpoints holds
every weight, the prompt and the frame it started with, so without a KL term it resumes from the newest one and ends
where the uninterrupted run ends; with one (grpo.beta > 0) the start's own weights are needed, and the refusal says
so. Both were refused as 'no such checkpoint folder (GRPO starts from a local folder ...)'."""

import json
import shutil

import pytest
import torch

from bbuvl.model.checkpoint import load_model
from bbuvl.rl.trainer import train_grpo
from tests.callbacks import StopAt
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture
from tests.train.test_run_inputs import _tree

pytestmark = pytest.mark.filterwarnings("ignore")

COMMON = ("training.max_steps=4", "training.save_steps=2", "grpo.beta=0")


def _losses(out):
    return [h["loss"] for h in json.loads((out / "history.json").read_text(encoding="utf-8")) if "loss" in h]


@pytest.fixture()
def stopped_without_its_start(grpo_config, trained_checkpoint, tmp_path):
    """`stop(*overrides)`: the config of a run from a copy of the session's checkpoint, stopped after step 3 (its
    checkpoint-2 complete) and its start then deleted."""
    start = tmp_path / "start"
    shutil.copytree(trained_checkpoint, start)

    def stop(*overrides):
        cfg = grpo_config(f"model.path={start}", *COMMON, f"training.output_dir={tmp_path / 'resumed'}", *overrides)
        train_grpo(cfg, progress=False, callbacks=[StopAt(3)])
        shutil.rmtree(start)
        return cfg

    return stop


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_without_a_kl_term_resumes_from_its_checkpoint_exactly_when_its_start_is_gone(
        grpo_config, stopped_without_its_start, trained_checkpoint, tmp_path):
    full = train_grpo(grpo_config(*COMMON, f"training.output_dir={tmp_path / 'full'}"), progress=False)
    resumed = train_grpo(stopped_without_its_start(), resume=True, progress=False)
    assert _losses(tmp_path / "resumed") == _losses(tmp_path / "full")
    wa, wb = load_model(full["final"])[0].state_dict(), load_model(resumed["final"])[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_run_with_a_kl_term_is_refused_naming_the_start_and_why_and_its_folder_is_kept(stopped_without_its_start,
                                                                                         tmp_path):
    cfg = stopped_without_its_start("grpo.beta=0.1")  # trained with it
    before = _tree(tmp_path / "resumed")
    with pytest.raises(ValueError) as e:
        train_grpo(cfg, resume=True, progress=False)
    assert str(e.value) == (
        f"model.path {tmp_path / 'start'}: no such folder, and this run's KL term (grpo.beta 0.1) is measured against "
        "the weights it started from, which no checkpoint of the run holds: put the starting checkpoint back there, or "
        "set model.path to where it is now")
    assert _tree(tmp_path / "resumed") == before
