"""A head whose box regression gives NaN (a diverged run's weights) is the photo's error naming it, never NaN written
into the predictions nor invalid JSON from the server; and only that photo's: the batch's other photos are answered
from the same pass, as they would be alone."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from bbuvl.infer.predictor import Predictor
from tests.nan_head import nan_for_portraits


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_head_giving_nan_boxes_is_the_photos_error_not_nan_boxes(trained_checkpoint):
    predictor = Predictor.load(trained_checkpoint, device="cpu")
    with torch.no_grad():  # the load refuses a file of NaN weights; a model diverged in memory is not read from one
        predictor.model.detection_head.box_head.layers[-1].bias.fill_(float("nan"))
    prepared = [predictor.prepare(Image.new("RGB", (224, 168), (200, 30, 30)))]
    (result,) = predictor.predict_each(prepared, "head", predictor.options("head", objectness_threshold=0.0))
    assert isinstance(result, ValueError) and "non-finite boxes" in str(result), result


@pytest.fixture()
def three_photos(tmp_path) -> list[str]:
    """Two landscape photos around a portrait one, which `nan_for_portraits` poisons."""
    made = []
    for name, size, colour in (("a.png", (224, 168), (200, 30, 30)), ("nan.png", (168, 224), (20, 30, 200)),
                               ("c.png", (224, 168), (30, 200, 30))):
        Image.new("RGB", size, colour).save(tmp_path / name)
        made.append(str(tmp_path / name))
    return made


@pytest.mark.parametrize("mode", ["head", "name"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_one_photo_of_a_batch_with_nan_boxes_fails_alone(predictor, three_photos, mode):
    hook, passes = nan_for_portraits(predictor.model.detection_head)
    try:
        lines = predictor.predict_lines(three_photos, mode, objectness_threshold=0.0)
        batched = list(passes)
        alone = [predictor.predict_lines([p], mode, objectness_threshold=0.0)[0] for p in three_photos]
    finally:
        hook.remove()
    # one head pass for the three: the NaN photo failed the batch, and each photo was predicted again alone
    assert batched == [3], batched
    good, nan = [lines[0], lines[2]], lines[1]
    assert nan["error"].startswith("ValueError: the detection head gave non-finite boxes") and nan["objects"] == []
    assert nan["verdict"]["verdict"] == "review"
    assert all(line["error"] is None and line["objects"] for line in good)
    assert [line["objects"] for line in good] == [alone[0]["objects"], alone[2]["objects"]]
    assert nan["error"] == alone[1]["error"]


def test_predict_still_raises_for_a_photo_the_head_gave_nan(predictor, three_photos):
    hook, _ = nan_for_portraits(predictor.model.detection_head)
    try:
        with pytest.raises(ValueError, match="non-finite boxes"):
            predictor.predict(three_photos, "head", objectness_threshold=0.0)
    finally:
        hook.remove()


def test_a_tiled_photo_one_of_whose_regions_gets_nan_boxes_is_its_error(predictor, tmp_path):
    # tiles of a landscape photo cut portrait regions (2 columns, 1 row): those regions' boxes are NaN, the photo's error
    photo = tmp_path / "wide.png"
    Image.new("RGB", (448, 448), (120, 120, 120)).save(photo)
    hook, passes = nan_for_portraits(predictor.model.detection_head)
    try:
        (line,) = predictor.predict_lines([str(photo)], "head", objectness_threshold=0.0, tiles="2x1")
    finally:
        hook.remove()
    assert passes, "no region went through the head"
    assert "non-finite boxes" in (line["error"] or ""), line
    assert line["objects"] == []


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_bbuvl_predict_with_a_batch_size_writes_the_other_photos_lines_as_alone(trained_checkpoint, tmp_path):
    import json

    from typer.testing import CliRunner

    from bbuvl.cli import app
    from tests.nan_head import nan_for_portraits_in_every_head

    folder = tmp_path / "photos"
    folder.mkdir()
    for name, size, colour in (("a.png", (224, 168), (200, 30, 30)), ("b_nan.png", (168, 224), (20, 30, 200)),
                               ("c.png", (224, 168), (30, 200, 30))):
        Image.new("RGB", size, colour).save(folder / name)
    lines = {}
    hook, passes = nan_for_portraits_in_every_head()
    try:
        for batch in ("3", "1"):
            out = tmp_path / f"pred{batch}.jsonl"
            result = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(folder), "-o", str(out),
                                              "--mode", "head", "--device", "cpu", "--batch-size", batch],
                                        env={"COLUMNS": "200"})
            assert result.exit_code == 0, result.output
            lines[batch] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    finally:
        hook.remove()
    assert passes == [3, 1, 1, 1], passes  # --batch-size 3: one pass; 1: one a photo
    assert [line["image"] for line in lines["3"]] == ["a.png", "b_nan.png", "c.png"]
    assert "non-finite boxes" in lines["3"][1]["error"] and lines["3"][1]["objects"] == []
    assert lines["3"] == lines["1"]  # every line as the photo's alone
    assert all(line["objects"] and line["error"] is None for line in (lines["3"][0], lines["3"][2]))


def test_a_head_giving_nan_objectness_is_the_photos_error_not_a_photo_of_nothing(predictor, three_photos):
    from dataclasses import replace

    def nan_objectness(module, args, kwargs, out):  # noqa: ANN001, ANN202
        return replace(out, objectness_logits=torch.full_like(out.objectness_logits, float("nan")))

    hook = predictor.model.detection_head.register_forward_hook(nan_objectness, with_kwargs=True)
    try:
        (line,) = predictor.predict_lines(three_photos[:1], "head", objectness_threshold=0.0)
    finally:
        hook.remove()
    # NaN >= any threshold is false: no query was kept, and the photo passed with nothing found
    assert line["error"] == ("ValueError: the detection head gave non-finite objectness (NaN or infinity): its "
                             "weights diverged or overflow; use an earlier checkpoint"), line
    assert line["verdict"]["verdict"] == "review"
