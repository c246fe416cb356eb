"""`data.oversize: skip` leaving a data file no photo is refused when the run starts, naming the file and the budget."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from bbuvl.train.run_inputs import read_run_inputs


def big_val(tmp_path):
    """A data.val of one 1000x750 photo: 54 vision tokens (252x168) under the tests' 50176 pixels; 224x168 takes 48."""
    Image.new("RGB", (1000, 750), (20, 60, 90)).save(tmp_path / "big.png")
    path = tmp_path / "val.jsonl"
    path.write_text(json.dumps({"images": ["big.png"], "width": 1000, "height": 750,
                                "objects": [{"bbox_2d": [100, 100, 400, 400], "desc": "线缆"}]}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def test_validation_photos_all_over_the_budget_are_refused_before_evaluations_run_on_nothing(run_config, tmp_path):
    # Before: the run trained, and every evaluation ran on no photo: no eval_loss was logged, and nothing said so
    val = big_val(tmp_path)
    with pytest.raises(ValueError) as e:
        read_run_inputs(run_config(f"data.val={val}", "data.oversize=skip", "model.max_vision_tokens=50"))
    assert str(e.value).startswith(f"data.val {val}: data.oversize skip leaves it no photo: all 1 of its photo(s) need "
                                   "more vision tokens (at least 54) than model.max_vision_tokens 50 allows")
    assert "raise model.max_vision_tokens to 54 or more" in str(e.value)


def test_training_photos_all_over_the_budget_are_refused_naming_the_file_not_the_scale(run_config, small_dataset):
    # Before: "no training photos to measure the scale of", once the model had loaded
    with pytest.raises(ValueError, match=rf"^data.train {small_dataset / 'train.jsonl'}: data.oversize skip leaves it "
                                         r"no photo: all 8 of its photo\(s\) need more vision tokens \(at least 48\)"):
        read_run_inputs(run_config("data.oversize=skip", "model.max_vision_tokens=40"))


def test_a_file_some_of_whose_photos_fit_or_resized_photos_start(run_config, tmp_path):
    val = big_val(tmp_path)
    read_run_inputs(run_config(f"data.val={val}", "data.oversize=resize", "model.max_vision_tokens=50"))
    read_run_inputs(run_config("data.oversize=skip", "model.max_vision_tokens=50"))
