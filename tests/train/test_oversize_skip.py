"""`data.oversize: skip` leaving a data file no photo is refused when the run starts, naming the file and the budget."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from bbuvl.train.run_inputs import read_run_inputs


def tokens(run_config) -> tuple[int, int]:
    """Vision tokens of a 224x168 photo (the small dataset's) and of a 1000x750 one in the family's frame under the tests'
    50176 pixels: 48 (224x168) and 54 (252x168) for Qwen2.5-VL's 28-pixel cells, 35 (224x160) and 48 (256x192) for the
    others' 32-pixel ones (docs/families.md)."""
    frame = run_config().model.frame()
    return frame.vision_tokens((224, 168)), frame.vision_tokens((1000, 750))


def big_val(tmp_path):
    """A data.val of one 1000x750 photo: more vision tokens than a 224x168 one in every family (`tokens`)."""
    Image.new("RGB", (1000, 750), (20, 60, 90)).save(tmp_path / "big.png")
    path = tmp_path / "val.jsonl"
    path.write_text(json.dumps({"images": ["big.png"], "width": 1000, "height": 750,
                                "objects": [{"bbox_2d": [100, 100, 400, 400], "desc": "线缆"}]}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


def test_validation_photos_all_over_the_budget_are_refused_before_evaluations_run_on_nothing(run_config, tmp_path):
    # Before: the run trained, and every evaluation ran on no photo: no eval_loss was logged, and nothing said so
    val, (small, big) = big_val(tmp_path), tokens(run_config)
    budget = big - 1  # the training photos fit it
    assert small <= budget
    with pytest.raises(ValueError) as e:
        read_run_inputs(run_config(f"data.val={val}", "data.oversize=skip", f"model.max_vision_tokens={budget}"))
    assert str(e.value).startswith(f"data.val {val}: data.oversize skip leaves it no photo: all 1 of its photo(s) need "
                                   f"more vision tokens (at least {big}) than model.max_vision_tokens {budget} allows")
    assert f"raise model.max_vision_tokens to {big} or more" in str(e.value)


def test_training_photos_all_over_the_budget_are_refused_naming_the_file_not_the_scale(run_config, small_dataset):
    # Before: "no training photos to measure the scale of", once the model had loaded
    small, _ = tokens(run_config)
    with pytest.raises(ValueError, match=rf"^data.train {small_dataset / 'train.jsonl'}: data.oversize skip leaves it "
                                         rf"no photo: all 8 of its photo\(s\) need more vision tokens \(at least {small}\)"):
        read_run_inputs(run_config("data.oversize=skip", f"model.max_vision_tokens={small - 8}"))


def test_a_file_some_of_whose_photos_fit_or_resized_photos_start(run_config, tmp_path):
    val, (_, big) = big_val(tmp_path), tokens(run_config)
    read_run_inputs(run_config(f"data.val={val}", "data.oversize=resize", f"model.max_vision_tokens={big - 1}"))
    read_run_inputs(run_config("data.oversize=skip", f"model.max_vision_tokens={big - 1}"))


def with_big_photos(small_dataset, tmp_path, name: str, n: int):
    """`small_dataset`'s `name` with `n` 1000x750 photos after its own (over a budget of one token under theirs)."""
    lines = (small_dataset / name).read_text(encoding="utf-8").splitlines()
    for i in range(n):
        Image.new("RGB", (1000, 750), (20, 60, 90)).save(tmp_path / f"big_{name}_{i}.png")
        lines.append(json.dumps({"images": [str(tmp_path / f"big_{name}_{i}.png")], "width": 1000, "height": 750,
                                 "objects": [{"bbox_2d": [100, 100, 400, 400], "desc": "线缆"}]}, ensure_ascii=False))
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, len(lines)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_end_counts_skipped_validation_photos_and_the_start_names_each_file(tiny_model_dir, small_dataset, run_config,
                                                                                 tmp_path, caplog):
    # Before: the start warned twice of "skipped N over-budget photos" without naming data.train or data.val, and the
    # end said "over-budget photos skipped: 1" of a run that had left out 1 training and 2 validation photos
    from typer.testing import CliRunner

    from bbuvl.cli import app
    from tests.train.test_cli_train_endings import common

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "images").symlink_to(small_dataset / "images")  # the small dataset's photos, as it names them
    train, train_lines = with_big_photos(small_dataset, tmp_path / "data", "train.jsonl", 1)
    val, val_lines = with_big_photos(small_dataset, tmp_path / "data", "val.jsonl", 2)
    budget = tokens(run_config)[1] - 1  # the training photos fit it
    r = CliRunner().invoke(app, ["train", *common(tiny_model_dir, small_dataset, tmp_path / "run"), "training.max_steps=1",
                                 f"data.train={train}", f"data.val={val}", "data.oversize=skip",
                                 f"model.max_vision_tokens={budget}"])
    text = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "over-budget photos skipped: 3 (data.train 1, data.val 2)" in text, r.output
    warned = [r.getMessage() for r in caplog.records if "data.oversize skip leaves out" in r.getMessage()]
    assert len(warned) == 2, warned
    assert (f"data.train {train}: data.oversize skip leaves out 1 photo(s) over model.max_vision_tokens {budget}: "
            f"line {train_lines} ({tmp_path / 'data' / 'big_train.jsonl_0.png'})") == warned[0]
    assert (f"data.val {val}: data.oversize skip leaves out 2 photo(s) over model.max_vision_tokens {budget}: "
            f"line {val_lines - 1} ") in warned[1]
