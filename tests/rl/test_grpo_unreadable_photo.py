"""A GRPO run whose training photo cannot be read when drawn (cut short by a copy that did not finish, after the start
read its header) answers the next photo in its place, names the photo by file and line, and lists it at the end, as
SFT does (docs/design.md, "Photos that cannot be read"): it ended the run at that step, naming the photo but not its
line, on whichever rank drew it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from bbuvl.config import dump_config, load_config
from tests.launch import free_port, grpo_overrides, launch_command

HANG_S = 300  # the run takes about 20 s



# Slow: two processes; tests/reliability/test_rl3_photos_that_cannot_be_read_when_drawn.py checks the same in one, by default
@pytest.mark.slow
def test_a_photo_cut_short_is_replaced_by_the_next_on_whichever_rank_draws_it(tiny_model_dir, small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    cut = data / "images" / "train_00003.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # its header whole: the start reads it
    # 2 ranks x 4 steps draw each of the 8 photos once. Before: "error: .../train_00003.jpg: cannot decode image: image
    # file is truncated", status 1 from torchrun
    printed = _trained_as_two_ranks(grpo_overrides(tiny_model_dir, data / "train.jsonl", None, tmp_path / "run", 4),
                                    tmp_path)
    where = f"{data / 'train.jsonl'}:4"
    assert f"{where}: this photo cannot be read ({cut}: cannot decode image" in printed
    assert "photos that could not be read when drawn, the next photo answered in each one's place: 1" in printed
    assert f"  {where}: {cut}: cannot decode image" in printed
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_validation_photo_cut_short_is_left_out_of_eval_reward_and_named(tiny_model_dir, small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    cut = data / "images" / "val_00001.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    # Before: "error: .../val_00001.jpg: cannot decode image: image file is truncated" at the first validation pass
    printed = _trained_as_two_ranks(grpo_overrides(tiny_model_dir, data / "train.jsonl", data / "val.jsonl",
                                                   tmp_path / "run", 1) + ["training.eval_steps=1"], tmp_path)
    where = f"{data / 'val.jsonl'}:2"
    assert printed.count(f"{where}: this validation photo cannot be read ({cut}: cannot decode image") == 1
    assert "validation photos that could not be read when evaluated, left out of eval_reward: 1" in printed
    assert f"  {where}: {cut}: cannot decode image" in printed
    history = json.loads((tmp_path / "run" / "history.json").read_text(encoding="utf-8"))
    assert any("eval_reward" in h for h in history)


def _trained_as_two_ranks(overrides: list[str], tmp_path) -> str:  # noqa: ANN001 - a path
    """Train the config of `overrides` as two processes, which must end well; what they printed."""
    config = tmp_path / "grpo.yaml"
    config.write_text(dump_config(load_config(None, overrides)), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "COLUMNS": "400"}
    done = subprocess.run(launch_command(2, free_port()) + ["train", str(config)], env=env, text=True,
                          capture_output=True, timeout=HANG_S)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed[-3000:]
    return printed
