"""GRPO from a checkpoint on data labelled with names the checkpoint never learnt: its answer grammar writes its own
labels only, so no rollout can name those objects; the start says so, naming the file, the line and what to do."""

import json
import logging

import pytest

from bbuvl.rl.trainer import read_grpo_inputs
from tests.rl.test_grpo_trainer import grpo_config  # noqa: F401 - the fixture

NEW = "新设备/未知"


@pytest.fixture()
def relabelled(small_dataset, tmp_path):
    """The small dataset's training photos, the second photo's first object labelled with a name of no checkpoint."""
    out = tmp_path / "relabelled.jsonl"
    lines = (small_dataset / "train.jsonl").read_text(encoding="utf-8").splitlines()
    with out.open("w", encoding="utf-8") as fh:
        for n, line in enumerate(lines):
            record = json.loads(line)
            record["images"] = [str(small_dataset / p) for p in record["images"]]
            if n == 1:
                record["objects"][0]["desc"] = NEW
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return out, sum(len(json.loads(line)["objects"]) for line in lines)


def _warned(caplog) -> str:
    return " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "bbuvl.rl.trainer")


def test_a_label_the_starting_checkpoint_cannot_write_is_named_with_its_line(grpo_config, relabelled, trained_checkpoint,
                                                                              caplog):
    """The run trained, logging a label reward its rollouts could never earn on those objects, without a word."""
    path, objects = relabelled
    with caplog.at_level(logging.WARNING):
        read_grpo_inputs(grpo_config(f"data.train={path}"))
    said = _warned(caplog)
    assert f"data.train {path}: 1 of {objects} objects carry 1 label(s) not among the checkpoint's, e.g. '{NEW}' " \
           f"({path}:2): the checkpoint {trained_checkpoint} answers with its" in said, said
    assert "grpo.rewards.label: 0" in said


def test_data_of_the_checkpoints_labels_or_no_label_reward_says_nothing_of_labels(grpo_config, relabelled, caplog):
    with caplog.at_level(logging.WARNING):
        read_grpo_inputs(grpo_config())  # the data the checkpoint was trained on
        read_grpo_inputs(grpo_config(f"data.train={relabelled[0]}", "grpo.rewards.label=0"))
    assert "not among the checkpoint's" not in _warned(caplog)


def test_validation_labels_the_checkpoint_never_trained_on_are_named_too(grpo_config, small_dataset, caplog):
    """The session's checkpoint learnt the labels of train.jsonl; val.jsonl holds others, which its greedy answers in
    the validation pass can never write."""
    val = small_dataset / "val.jsonl"
    with caplog.at_level(logging.WARNING):
        read_grpo_inputs(grpo_config(f"data.val={val}"))
    said = _warned(caplog)
    assert f"data.val {val}: " in said and f"({val}:1)" in said and "data.train" not in said, said
