"""`detection.fine_features`, `detection.pixel_points` and `detection.pixel_context` in the whole model: the student
image's patches and pixels reach the head in any batch layout, start exactly at the model without them, and survive a
checkpoint."""

import shutil
from pathlib import Path

import pytest
import torch

from bbuvl.data.families import get_family
from bbuvl.data.schema import read_records, resolve_image, write_dataset
from bbuvl.encode.collate import PackedCollator, PaddedCollator
from bbuvl.model.checkpoint import load_model, save_checkpoint
from bbuvl.synthetic.dataset import synthesize
from bbuvl.train.trainer import build_run
from tests.diagnostics.conftest import one_thread  # noqa: F401 - one torch thread, as the training tests

FIELDS = ("boxes", "objectness_logits", "query_hidden")
# The tower's pre-merge patches, the pixels it received, and both.
LEVELS = {
    "fine": ("detection.fine_features=true",),
    "pixels": ("detection.pixel_points=4",),
    "both": ("detection.fine_features=true", "detection.pixel_points=4"),
    "pixels and context": ("detection.pixel_points=4", "detection.pixel_context=3", "detection.caption_refit.steps=1"),
}


@pytest.fixture(scope="module")
def two_shapes(tmp_path_factory) -> Path:
    """A landscape and a portrait photo (different token grids) in one training file."""
    root = tmp_path_factory.mktemp("two-shapes")
    (root / "images").mkdir()
    records = []
    for name, size in (("wide", (224, 168)), ("tall", (168, 224))):
        synthesize(root / name, 1, 0, seed=5, size=size, num_teachers=0)
        train = root / name / "train.jsonl"
        for r in read_records(train):
            shutil.copy(resolve_image(train, r.image), root / "images" / f"{name}.jpg")
            records.append(r.model_copy(update={"images": [f"images/{name}.jpg"]}))
    write_dataset(root / "train.jsonl", records)
    return root / "train.jsonl"


def _nudge_fine(model) -> None:
    """Move the zero-initialised fine and pixel projections, as training would, so each level changes the answer."""
    g = torch.Generator().manual_seed(7)
    head = model.detection_head
    layers = (getattr(head, "fine_fold", None), getattr(head, "fine_roi", None),
              *(level.layers[-1] for level in (head.pixel_roi, head.pixel_context_roi) if level is not None))
    with torch.no_grad():
        for layer in layers:
            if layer is not None:
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.05)


def _fine_run(run_config, two_shapes, level: str = "fine"):
    # Teachers in every sample: the head must read the student image, not the batch's first images.
    return build_run(run_config(f"data.train={two_shapes}", "data.teacher_ratio=1.0", *LEVELS[level]))


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_each_sample_reads_its_own_student_image_alone_padded_or_packed(run_config, two_shapes, tiny_family, level):
    run = _fine_run(run_config, two_shapes, level)
    model = run.model.eval()
    _nudge_fine(model)
    samples = [run.train_dataset[0], run.train_dataset[1]]
    assert all(len(s.image_grid_thw) >= 2 for s in samples)  # a teacher photo, then the student's
    padded = PaddedCollator(run.collator.pad_token_id, run.collator.image_token_id, merge=run.collator.merge)
    packed = PackedCollator(run.collator.pad_token_id, run.collator.image_token_id, merge=run.collator.merge)
    batch = padded(samples)
    student = batch.image_grid_thw[batch.det_image_index]
    assert torch.equal(student[:, 1:], 2 * batch.det_grid_hw)
    assert batch.det_grid_hw[0].tolist() != batch.det_grid_hw[1].tolist()  # the fine maps are padded too
    with torch.no_grad():
        both = model.detect(batch)
        alone = [model.detect(padded([s])) for s in samples]
        in_row = model.detect(packed(samples))
    for name in FIELDS:
        for k in range(2):
            torch.testing.assert_close(getattr(both, name)[k], getattr(alone[k], name)[0], atol=1e-4, rtol=1e-4)
            if get_family(tiny_family).packs_isolated:  # packing is refused for the others (docs/families.md)
                torch.testing.assert_close(getattr(in_row, name)[k], getattr(alone[k], name)[0], atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def without_levels(tiny_model_dir, small_dataset, two_shapes, tmp_path_factory):
    """The run without finer levels, built once: the tests below only read its model (in eval mode) and batches."""
    from tests.conftest import run_config_at

    run = build_run(run_config_at(tiny_model_dir, small_dataset, tmp_path_factory.mktemp("off") / "run")(
        f"data.train={two_shapes}", "data.teacher_ratio=1.0"))
    run.model.eval()
    return run


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_model_with_finer_levels_starts_exactly_at_the_model_without(run_config, two_shapes, without_levels, level):
    off = without_levels.model
    on = _fine_run(run_config, two_shapes, level).model.eval()
    missing, unexpected = on.detection_head.load_state_dict(off.detection_head.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(("fine_", "pixel_roi.", "pixel_context_roi.")) for k in missing)
    batch = without_levels.collator([without_levels.train_dataset[0], without_levels.train_dataset[1]])
    with torch.no_grad():
        a, b = off.detect(batch), on.detect(batch)
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    loss_off, loss_on = off(batch), on(batch)  # training's pass too
    assert torch.equal(loss_off.loss, loss_on.loss)


@pytest.mark.parametrize("level", ["fine", "pixels", "pixels and context"])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_finer_levels_round_trip_through_a_checkpoint(run_config, two_shapes, tmp_path, level):
    run = _fine_run(run_config, two_shapes, level)
    _nudge_fine(run.model)
    folder = save_checkpoint(run.model, run.processor, run.cfg, run.contract, run.prompt, tmp_path / "ckpt")
    model, _, cfg, _, _ = load_model(folder, device="cpu")
    head = model.detection_head
    if level == "fine":
        assert cfg.detection.fine_features and head.fine_features
    else:
        assert cfg.detection.pixel_points == 4 and head.pixel_points == 4 and not head.fine_features
        context = 3 if level == "pixels and context" else 0
        assert cfg.detection.pixel_context == head.pixel_context == context
        assert (head.pixel_context_roi is not None) == bool(context)
    saved = run.model.detection_head.state_dict()
    loaded = head.state_dict()
    assert saved.keys() == loaded.keys() and any(k.startswith(("fine_fold", "pixel_roi")) for k in loaded)
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    batch = run.collator([run.train_dataset[0]])
    with torch.no_grad():
        before, after = run.model.eval().detect(batch), model.detect(batch)
    for name in FIELDS:
        assert torch.equal(getattr(before, name), getattr(after, name)), name
