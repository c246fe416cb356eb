"""`bbuvl doctor` on input nobody meant: a plot path no picture format fits, a grid too large to hold, a photo no
model frame holds. Each is one error naming what is wrong, before the work it would waste where it can be."""

from __future__ import annotations

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.doctor import app

pytestmark = pytest.mark.filterwarnings("ignore")
runner = CliRunner()


def said(result) -> str:
    return " ".join(result.output.split())


@pytest.mark.parametrize("command", ["memory", "features", "attention", "landscape"])
def test_a_plot_path_no_picture_format_fits_is_refused_before_the_model_loads(tmp_path, command):
    # The checkpoint is not there: a refusal that came after loading would name it instead.
    args = {"memory": ["memory", str(tmp_path / "ckpt")], "features": ["features", str(tmp_path / "ckpt")],
            "attention": ["attention", str(tmp_path / "ckpt"), str(tmp_path / "photo.png")],
            "landscape": ["landscape", str(tmp_path / "ckpt"), str(tmp_path / "val.jsonl")]}[command]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "plot.txt")])
    assert result.exit_code == 2 and f"{tmp_path / 'plot.txt'}: cannot write a picture as .txt; name it .png" in said(result)
    assert "ckpt" not in said(result).replace(str(tmp_path / "plot.txt"), "") and not (tmp_path / "plot.txt").exists()


def test_a_landscape_grid_too_large_to_hold_is_refused_naming_its_cost(tmp_path):
    result = runner.invoke(app, ["landscape", str(tmp_path / "ckpt"), str(tmp_path / "val.jsonl"), "--steps", "100000"])
    assert result.exit_code == 2 and "--steps 100000: at most 101 (the grid costs steps² = 10,000,000,000" in said(result)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A real PNG 20000x20: 1000 times as wide as high, more than any model frame holds."""
    path = tmp_path_factory.mktemp("wide") / "wide [red]图.png"
    Image.new("RGB", (20000, 20), (0, 160, 0)).save(path)
    return path


@pytest.mark.parametrize("command", ["model", "memory", "attention"])
def test_a_photo_no_model_frame_holds_is_an_error_naming_it(trained_checkpoint, wide, tmp_path, command):
    ckpt = str(trained_checkpoint)
    args = {"model": ["model", ckpt, "--image", str(wide)],
            "memory": ["memory", ckpt, "--n", "5", "--images", str(wide), "--out", str(tmp_path / "m.png")],
            "attention": ["attention", ckpt, str(wide), "--out", str(tmp_path / "a.png")]}[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"error: {wide}: aspect ratio 1000.0 exceeds 200: no model frame holds it; crop it first" in said(result)
    assert "Traceback" not in result.output and not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("size", [(1, 1), (20, 20000 // 200)])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_one_pixel_photo_and_one_at_the_frames_limit_are_looked_at(trained_checkpoint, tmp_path, size):
    photo = tmp_path / "small.png"
    Image.new("RGB", size, (200, 0, 0)).save(photo)
    result = runner.invoke(app, ["attention", str(trained_checkpoint), str(photo), "--top-k", "1",
                                 "--out", str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "a.png").format == "PNG"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_attention_asked_for_more_queries_than_the_head_has_says_it_shows_them_all(trained_checkpoint, tmp_path):
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 48), (200, 0, 0)).save(photo)
    result = runner.invoke(app, ["attention", str(trained_checkpoint), str(photo), "--top-k", "999",
                                 "--out", str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output
    assert "note: --top-k 999: the head has " in said(result) and "queries; all of them are shown" in said(result)


# A dataset's lines are read after loading (its problems named there); a photo's header, and any path's existence, before.
@pytest.mark.parametrize("command, given", [(c, "missing") for c in ("memory", "features", "coordinates", "landscape")]
                         + [("attention", g) for g in ("missing", "folder", "not a picture")]
                         + [(c, "folder") for c in ("features", "coordinates", "landscape")])
def test_a_photo_or_dataset_that_is_not_there_is_named_before_the_checkpoint_loads(tmp_path, command, given):
    # The checkpoint is not there either: a refusal that came after loading would name it instead (before, each
    # command loaded every weight, then said 'nope.jsonl: cannot open dataset').
    ckpt = str(tmp_path / "ckpt")
    path = tmp_path / ("photo.png" if command == "attention" else "val.jsonl")
    if given == "folder":
        path.mkdir()
    elif given == "not a picture":
        path.write_text("not a picture\n", encoding="utf-8")
    args = {"memory": ["memory", ckpt, "--images", str(path)], "features": ["features", ckpt, "--data", str(path)],
            "coordinates": ["coordinates", ckpt, "--data", str(path)], "attention": ["attention", ckpt, str(path)],
            "landscape": ["landscape", ckpt, str(path)]}[command]
    out = [] if command == "coordinates" else ["--out", str(tmp_path / "plot.png")]
    result = runner.invoke(app, [*args, *out, "--device", "cpu"])
    why = {"missing": "image file not found" if command == "attention" else "no such file or folder",
           "folder": "a folder, not an image file" if command == "attention" else "a folder, not a JSONL dataset file",
           "not a picture": "not an image"}[given]
    assert result.exit_code == 2 and f"error: {path}: {why}" in said(result), result.output
    assert "ckpt" not in said(result) and not (tmp_path / "plot.png").exists()


def test_doctor_model_names_a_missing_image_before_the_checkpoint_loads(tmp_path):
    result = runner.invoke(app, ["model", str(tmp_path / "ckpt"), "--image", str(tmp_path / "nope.png")])
    # Before: the checkpoint's weights loaded, then 'nope.png: image file not found'.
    assert result.exit_code == 2 and f"error: {tmp_path / 'nope.png'}: no such file or folder (--image)" in said(result)
    assert "ckpt" not in said(result)


def test_doctor_data_against_a_plain_model_folder_says_it_has_no_prompt_not_that_a_file_is_lost(tmp_path):
    plain = tmp_path / "base"
    plain.mkdir()
    (plain / "config.json").write_text('{"model_type": "qwen2_5_vl"}\n', encoding="utf-8")
    (tmp_path / "train.jsonl").write_text("", encoding="utf-8")
    result = runner.invoke(app, ["data", str(tmp_path / "train.jsonl"), "--checkpoint", str(plain)])
    # Before: 'base/prompt.json: no such prompt file'.
    assert result.exit_code == 2 and f"{plain}: a plain model folder (no bbuvl.yaml) has no prompt of its own" in said(result)
    assert "prompt.json" not in said(result)


@pytest.mark.parametrize("command", ["data", "model", "memory", "landscape"])
def test_a_dataset_or_checkpoint_another_command_is_still_writing_is_refused_naming_it(tmp_path, command):
    from tests.reliability.faults import held_elsewhere

    # What doctor would read is locked by its writer (bbuvl/outputs.py), as `data convert` or `model tiny` holds it.
    dataset, ckpt = tmp_path / "val.jsonl", tmp_path / "ckpt"
    dataset.write_text("", encoding="utf-8")
    ckpt.mkdir()
    given, writer = {"data": (dataset, "data convert"), "model": (ckpt, "model tiny"),
                     "memory": (ckpt, "model tiny"), "landscape": (dataset, "data convert")}[command]
    args = {"data": ["data", str(dataset)], "model": ["model", str(ckpt)],
            "memory": ["memory", str(ckpt), "--out", str(tmp_path / "m.png")],
            "landscape": ["landscape", str(ckpt), str(dataset), "--out", str(tmp_path / "l.png")]}[command]
    with held_elsewhere(given, writer, pid=4343):
        result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"{given}" in said(result) and f"`bbuvl {writer}` (pid 4343) is still writing it" in said(result)
    assert "Traceback" not in result.output and not list(tmp_path.glob("*.png"))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_memory_of_a_checkpoint_whose_run_data_is_elsewhere_measures_a_synthetic_picture_and_says_so(
        trained_checkpoint, small_dataset, tmp_path):
    import shutil

    ckpt = tmp_path / "copied"  # a checkpoint copied from the machine that trained it, without the run's data
    shutil.copytree(trained_checkpoint, ckpt)
    config = ckpt / "bbuvl.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace(str(small_dataset), "/elsewhere/data"), encoding="utf-8")
    result = runner.invoke(app, ["memory", str(ckpt), "--n", "5", "--batch-size", "2", "--out", str(tmp_path / "m.png")])
    # Before: TypeError: unhashable type: 'Image', a traceback, where the synthetic picture stood in for the photos.
    assert result.exit_code == 0, result.output
    assert ("neither the run's data.val nor data.train is here" in said(result)
            and "memory is measured on a synthetic 320x240 picture; pass --images" in said(result)), said(result)
    assert (tmp_path / "m.png").is_file()

    for command in ("features", "coordinates"):  # these need the photos' boxes: no picture can stand in
        out = tmp_path / f"{command}.{'json' if command == 'coordinates' else 'png'}"  # coordinates' --out is JSON
        result = runner.invoke(app, [command, str(ckpt), "--out", str(out)])
        # Before: 'no dataset to probe with', not saying the run's own data was looked for, nor where.
        assert result.exit_code == 2 and ("neither the run's data.val nor data.train is here (None, "
                                          "/elsewhere/data/train.jsonl: a checkpoint copied from elsewhere?)") in said(result), said(result)


@pytest.mark.parametrize("given", ["checkpoint", "model"])
def test_doctor_data_on_a_checkpoint_or_model_folder_says_what_it_is_not_that_train_jsonl_is_missing(
        trained_checkpoint, tiny_model_dir, given):
    folder = {"checkpoint": trained_checkpoint, "model": tiny_model_dir}[given]
    result = runner.invoke(app, ["data", str(folder)])
    assert result.exit_code == 2, result.output
    what = "a checkpoint folder" if given == "checkpoint" else "a model folder"
    assert said(result).startswith(f"error: {folder}: {what}, not a dataset: "), said(result)
    assert f"`bbuvl doctor model {folder}`" in said(result) and "train.jsonl" not in said(result)


def test_features_of_a_checkpoint_with_a_nan_weight_is_an_error_not_a_table_of_live_units(
        trained_checkpoint, small_dataset, tmp_path):
    # Before: every layer nan, "dead 0", exit 0, and a note blaming the probe photos for the captions' idle layers
    ckpt = _with_a_nan_weight(trained_checkpoint, tmp_path)
    result = runner.invoke(app, ["features", str(ckpt), "--data", str(small_dataset / "val.jsonl"), "--samples", "2",
                                 "--out", str(tmp_path / "f.png")], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "layers hold NaN or inf activations" in said(result), result.output
    assert "probe photos with objects" not in said(result)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_landscape_of_a_checkpoint_whose_own_loss_is_nan_is_an_error(trained_checkpoint, small_dataset, tmp_path):
    # Before: "loss at the checkpoint nan; over the grid nan .. nan", a plot of nothing, exit 0
    ckpt = _with_a_nan_weight(trained_checkpoint, tmp_path)
    result = runner.invoke(app, ["landscape", str(ckpt), str(small_dataset / "val.jsonl"), "--samples", "2", "--steps",
                                 "3", "--out", str(tmp_path / "l.png")], env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "the loss at the checkpoint itself is nan" in said(result), result.output
    assert not (tmp_path / "l.png").exists()


def _with_a_nan_weight(trained_checkpoint, tmp_path):  # noqa: ANN001, ANN202 - paths
    """A copy of the checkpoint with one NaN in a vision bias: every activation downstream is NaN."""
    import shutil

    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    weights = load_file(ckpt / "model.safetensors")
    # Qwen2.5-VL names the vision tower `visual.*`, the Qwen3 families `model.visual.*`
    name = next(k for k in weights if f".{k}".startswith((".visual.", ".model.visual.")) and k.endswith(".bias"))
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] = float("nan")
    save_file(weights, ckpt / "model.safetensors", metadata={"format": "pt"})
    return ckpt
