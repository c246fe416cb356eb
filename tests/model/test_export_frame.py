"""An export's image processor, loaded from its folder by stock transformers with no arguments, shows each photo with
the pixel_values and image_grid_thw `bbuvl predict` shows it with on the checkpoint; where no pair of bounds can, the
export says which photos and how training framed them (model/export.py `stock_frame`, `frame_gap`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app as cli

pytestmark = pytest.mark.usefixtures("one_thread")

# Small, the tests' training size, a phone's 4000x3000, the same photo turned by its EXIF orientation, and a strip.
SIZES = [(13, 13), (120, 100), (224, 168), (640, 480), (4000, 3000), (3000, 60)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """One photo per size, and a 640x480 one stored sideways with EXIF orientation 6 (shown 480x640)."""
    folder = tmp_path_factory.mktemp("frame-photos")
    paths = []
    for w, h in SIZES:  # JPEG: 4000x3000 decodes in a third of a PNG's time
        Image.new("RGB", (w, h), (90, 120, 40)).save(folder / f"p{w}x{h}.jpg")
        paths.append(folder / f"p{w}x{h}.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (640, 480), (30, 60, 200)).save(folder / "turned.jpg", exif=exif)
    return paths + [folder / "turned.jpg"]


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    """The tiny Qwen2.5-VL, its folder and processor, loaded once for every checkpoint below."""
    from bbuvl.model.loading import load_model_and_processor
    from bbuvl.tiny.model import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("frame-tiny") / "model", family="qwen2_5_vl", seed=0)
    return folder, *load_model_and_processor(str(folder), dtype="float32", attn_implementation="sdpa")


def checkpoint_at(tiny_vlm, out: Path, min_pixels: int, max_pixels: int, budget: int) -> Path:
    """A checkpoint saved as `bbuvl train` saves one, trained at these bounds and this vision-token budget."""
    from bbuvl.config import load_config
    from bbuvl.model.checkpoint import Prompt, save_checkpoint
    from bbuvl.model.vlm import BBUVLModel

    base, vlm, processor = tiny_vlm
    cfg = load_config(None, [f"model.path={base}", "model.dtype=float32", f"model.min_pixels={min_pixels}",
                             f"model.max_pixels={max_pixels}", f"model.max_vision_tokens={budget}",
                             "detection.enabled=false", "model.vision_positions=false", "data.teachers=null"])
    return save_checkpoint(BBUVLModel.build(vlm, cfg, processor.tokenizer), processor, cfg, cfg.model.frame(),
                           Prompt("Find the parts.", ["螺丝"], "zh"), out)


def card_opened(photo: Path) -> Image.Image:
    """`photo` as the model card's code opens it (its `upright_rgb`)."""
    import numpy as np

    from bbuvl.model.model_card import UPRIGHT_RGB

    namespace = {"np": np, "Image": Image}
    exec("\n".join(UPRIGHT_RGB), namespace)
    return namespace["upright_rgb"](photo)


def shown(checkpoint: Path, exported: Path, photos: list[Path]) -> list[tuple[str, tuple, tuple, Path]]:
    """Each photo's (name, bbuvl's grid and pixel_values shape on the checkpoint, stock's on the export, photo)."""
    from transformers import AutoImageProcessor

    from bbuvl.infer.predictor import Predictor

    predictor = Predictor.load(checkpoint, device="cpu")
    # What stock AutoProcessor.from_pretrained(folder) holds as its image_processor: the same files, the same class.
    stock = AutoImageProcessor.from_pretrained(exported)
    rows = []
    for photo in photos:
        sample = predictor.encode(predictor.prepare(photo)).sample
        image = card_opened(photo)  # as the model card's code opens it
        theirs = stock(images=[image], return_tensors="pt")
        rows.append((photo.name, (tuple(sample.image_grid_thw[0].tolist()), tuple(sample.pixel_values.shape)),
                     (tuple(theirs["image_grid_thw"][0].tolist()), tuple(theirs["pixel_values"].shape)), photo))
    return rows


@pytest.mark.parametrize("bounds", [
    pytest.param((12544, 150528, 192), marks=pytest.mark.slow),  # the bbu demo's recipe: its budget is its max_pixels
    pytest.param((3136, 1003520, 100), marks=pytest.mark.slow),  # a budget under max_pixels, which export lowers to it
    (78400, 78400, 64),  # min_pixels past the budget: all but a strip are framed at one cell to the budget
])
def test_a_stock_processor_loaded_from_the_export_shows_every_photo_as_bbuvl_predict_on_the_checkpoint(
        tiny_vlm, photos, tmp_path, bounds):
    checkpoint = checkpoint_at(tiny_vlm, tmp_path / "ckpt", *bounds)
    r = CliRunner().invoke(cli, ["model", "export", str(checkpoint), str(tmp_path / "exported")])
    # Before, min_pixels past the budget: 'min_pixels (78400) must not exceed max_pixels (50176)', and no export.
    assert r.exit_code == 0, r.output
    # Only where min_pixels passes the budget is there a photo (a narrow strip) to warn of; this one is framed alike.
    assert ("frame: the image processor" in " ".join(r.output.split())) == (bounds[0] > bounds[2] * 28 ** 2), r.output
    card = (tmp_path / "exported" / "README.md").read_text(encoding="utf-8")
    # The card gives the run's own bounds for the strips it framed by them; before, it said `max_pixels` held the budget.
    assert (f'"shortest_edge": {bounds[0]}, "longest_edge": {bounds[1]}' in card) == (bounds[0] > bounds[2] * 28 ** 2)
    rows = shown(checkpoint, tmp_path / "exported", photos)
    assert [(name, ours) for name, ours, _, _ in rows] == [(name, theirs) for name, _, theirs, _ in rows]
    assert len({ours for _, ours, _, _ in rows}) >= 4, rows  # the sizes gave frames of their own: something was compared


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_export_whose_processor_cannot_frame_some_photos_as_training_did_says_which_and_how(tiny_vlm, photos,
                                                                                                tmp_path):
    # The shapes demo's frame: 64 cells, min = max. A photo under it is scaled up to whole cells past the budget
    # (224x168: 70 tokens) where training, holding the budget, framed it at 48; no pair of bounds does both.
    checkpoint = checkpoint_at(tiny_vlm, tmp_path / "ckpt", 50176, 50176, 64)
    r = CliRunner().invoke(cli, ["model", "export", str(checkpoint), str(tmp_path / "exported")])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    # Before: the card alone said so; the export's output named nothing but the parts it left out.
    m = re.search(r"frame: the image processor \(min_pixels (\d+), max_pixels (\d+)\) scales a photo under min_pixels "
                  r"up past the 64 vision tokens training held each photo to \(up to \d+\); training framed such a "
                  r"photo at min_pixels (\d+) and max_pixels (\d+)", said)
    assert m, said
    folder_bounds, training_bounds = tuple(map(int, m.group(1, 2))), tuple(map(int, m.group(3, 4)))
    assert folder_bounds == (50176, 50176) and training_bounds == (784, 50176)
    from transformers import AutoImageProcessor

    stock = AutoImageProcessor.from_pretrained(tmp_path / "exported")
    differ = 0
    for name, ours, theirs, photo in shown(checkpoint, tmp_path / "exported", photos):
        if theirs[0][1] * theirs[0][2] // 4 > 64:  # the output's rule: those photos at training's bounds instead
            differ += 1
            image = card_opened(photo)
            out = stock(images=[image], size={"shortest_edge": training_bounds[0], "longest_edge": training_bounds[1]},
                        return_tensors="pt")
            theirs = (tuple(out["image_grid_thw"][0].tolist()), tuple(out["pixel_values"].shape))
        assert theirs == ours, name
    assert differ >= 2  # 120x100 and 224x168 are scaled up past the budget


@pytest.mark.parametrize("bounds", [
    (12544, 1568000, 2000),  # a budget over the 1,280 tokens a plain folder is given by default
    (50176, 50176, 64),  # the shapes demo's: photos a stock processor scales up past the budget
])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_bbuvl_predict_on_the_export_frames_every_photo_as_on_the_checkpoint(tiny_vlm, photos, tmp_path, bounds):
    import json

    from bbuvl.infer.predictor import Predictor
    from bbuvl.model.checkpoint import read_model_folder

    checkpoint = checkpoint_at(tiny_vlm, tmp_path / "ckpt", *bounds)
    assert CliRunner().invoke(cli, ["model", "export", str(checkpoint), str(tmp_path / "exported")]).exit_code == 0
    labels = json.loads((tmp_path / "exported" / "labels.json").read_text(encoding="utf-8"))
    ours = Predictor.load(checkpoint, device="cpu")
    theirs = Predictor.load(read_model_folder(tmp_path / "exported", labels["labels"], labels["lang"]), device="cpu")
    grids = [(p.name, *(tuple(pred.encode(pred.prepare(p)).sample.image_grid_thw[0].tolist()) for pred in (ours, theirs)))
             for p in photos]
    # Before, a plain folder's default 1,280-token budget shrank a 4000x3000 photo to 1,230 tokens where the
    # checkpoint showed it 1,938, and the export's bounds scaled 224x168 up to 70 tokens where the checkpoint held 48.
    assert [(name, a) for name, a, _ in grids] == [(name, b) for name, _, b in grids]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_export_frame_file_that_is_no_frame_is_refused_naming_it(tiny_vlm, tmp_path):
    from bbuvl.model.checkpoint import EXPORT_FRAME_FILE, read_model_folder

    checkpoint = checkpoint_at(tiny_vlm, tmp_path / "ckpt", 12544, 150528, 192)
    assert CliRunner().invoke(cli, ["model", "export", str(checkpoint), str(tmp_path / "exported")]).exit_code == 0
    (tmp_path / "exported" / EXPORT_FRAME_FILE).write_text('{"min_pixels": 0}', encoding="utf-8")
    with pytest.raises(ValueError, match=f"{EXPORT_FRAME_FILE}: min_pixels must be a positive integer"):
        read_model_folder(tmp_path / "exported", ["螺丝"], "zh")
