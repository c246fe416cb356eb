"""A GRPO run from a plain model folder saves its own config's data section in its checkpoints: kept as typed, a
relative data.hierarchy was read by predict and serve from whatever folder they ran in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from bbuvl.data.labels import DEFAULT_HIERARCHY
from bbuvl.paths import real_path
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_grpo_run_from_a_plain_folder_records_its_data_files_where_they_were(grpo_config, tiny_model_dir,
                                                                               small_dataset, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(small_dataset, work / "data")
    shutil.copy(DEFAULT_HIERARCHY, work / "data" / "hierarchy.json")
    monkeypatch.chdir(work)
    cfg = grpo_config(f"model.path={tiny_model_dir}", "data.train=data/train.jsonl", "data.hierarchy=data/hierarchy.json",
                      "training.max_steps=1")
    final = Path(train_grpo_run(cfg))
    data = yaml.safe_load((final / "bbuvl.yaml").read_text("utf-8"))["data"]
    assert data["hierarchy"] == str(real_path(work / "data" / "hierarchy.json"))
    assert data["train"] == str(real_path(work / "data" / "train.jsonl"))


def train_grpo_run(cfg) -> str:
    from bbuvl.rl.trainer import train_grpo

    return train_grpo(cfg, progress=False)["final"]
