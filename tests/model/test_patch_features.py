"""Pre-merge patch features: recorded from the real tower of every family, laid out under the head's token grid."""

import copy
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from bbuvl.data.families import get_family
from bbuvl.model.patch_features import (
    PatchCapture,
    PatchFeatures,
    map_to_unit_order,
    patch_maps,
    pixel_maps,
    unit_order_to_map,
)
from tests.diagnostics.conftest import one_thread  # noqa: F401 - one torch thread, as the training tests
from tests.threads import run_together


def _record(model, images: list[Image.Image], processor,
            pixels: bool = False) -> tuple[PatchFeatures, torch.Tensor, torch.Tensor]:
    """The tower's recorded pre-merge features, its merged output and the images' patch grids."""
    visual = model.model.visual
    enc = processor.image_processor(images=images, return_tensors="pt")
    capture = PatchCapture(pixels=pixels)
    handle = capture.attach(visual)
    try:
        with torch.no_grad(), capture.recording():
            out = visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
            patches = capture.take()
    finally:
        handle.remove()
    return patches, out.pooler_output, enc["image_grid_thw"]


def _frame_photo(family: str, cols: int, rows: int, value: int = 128) -> Image.Image:
    """A flat grey photo exactly `cols x rows` merged tokens of `family` (the processor does not resize it)."""
    factor = get_family(family).factor
    return Image.new("RGB", (cols * factor, rows * factor), (value, value, value))


def test_unit_order_is_rows_of_two_by_two_blocks_and_round_trips():
    h, w = 4, 6
    index = torch.arange(h * w, dtype=torch.float32)[:, None]  # each patch's position in the sequence
    m = unit_order_to_map(index, h, w)[0]
    for r in range(h // 2):
        for c in range(w // 2):
            for dr in range(2):
                for dc in range(2):
                    assert m[2 * r + dr, 2 * c + dc] == (r * (w // 2) + c) * 4 + dr * 2 + dc
    assert torch.equal(map_to_unit_order(unit_order_to_map(index, h, w)), index)


def test_the_fine_map_re_merged_by_the_towers_own_merger_is_its_merged_output(tiny, tiny_family):
    """Windows (Qwen2.5-VL) and merge units are undone: the merger reads the fine map's 2x2 blocks as the tokens."""
    model, processor = tiny
    rng = np.random.default_rng(0)
    # Noise, so that every patch differs and any wrong order shows; two sizes, so windows are cut at the borders.
    photos = [Image.fromarray(rng.integers(0, 255, (rows, cols, 3), dtype=np.uint8))
              for cols, rows in ((448, 336), (224, 160))]
    patches, merged, grids = _record(model, photos, processor)
    assert torch.equal(patches.grid_thw, grids)
    start = token = 0
    for _, h, w in grids.tolist():
        fine = unit_order_to_map(patches.features[start:start + h * w], h, w)
        remerged = model.model.visual.merger(map_to_unit_order(fine))
        torch.testing.assert_close(remerged, merged[token:token + h * w // 4], rtol=0, atol=1e-5)
        start, token = start + h * w, token + h * w // 4


def test_a_bright_patch_lands_on_its_own_fine_cell(tiny, tiny_family):
    model, processor = tiny
    patch = get_family(tiny_family).patch_size
    flat = _frame_photo(tiny_family, 8, 6)
    bright = flat.copy()
    row, col = 5, 2  # the lower-left patch of token (2, 1): a swapped row and column would land elsewhere
    bright.paste((255, 255, 255), (col * patch, row * patch, (col + 1) * patch, (row + 1) * patch))
    patches, _, grids = _record(model, [flat, bright], processor)
    maps, hw = patch_maps(patches, torch.tensor([0, 1]))
    assert hw.tolist() == [[12, 16], [12, 16]]
    change = (maps[1] - maps[0]).norm(dim=0)  # [12, 16]
    assert divmod(int(change.argmax()), 16) == (row, col)


def test_patch_maps_take_each_samples_student_image_top_left_and_zero_elsewhere():
    # Three images: a teacher photo (4x4 patches), then two students (4x6 and 2x2).
    grids = torch.tensor([[1, 4, 4], [1, 4, 6], [1, 2, 2]])
    feats = torch.arange(16 + 24 + 4, dtype=torch.float32)[:, None].repeat(1, 3)
    maps, hw = patch_maps(PatchFeatures(feats, grids), torch.tensor([1, 2]))
    assert maps.shape == (2, 3, 4, 6) and hw.tolist() == [[4, 6], [2, 2]]
    assert maps[0, 0, 0, 0] == 16 and maps[0, 0, 1, 1] == 16 + 3  # the student's first unit, its lower-right patch
    assert maps[1, 0, :2, :2].tolist() == [[40.0, 41.0], [42.0, 43.0]]
    assert maps[1, :, 2:].abs().sum() == 0 and maps[1, :, :, 2:].abs().sum() == 0


def test_nothing_is_recorded_outside_recording(tiny):
    model, processor = tiny
    capture = PatchCapture()
    handle = capture.attach(model.model.visual)
    try:
        enc = processor.image_processor(images=[_frame_photo(model.config.model_type, 4, 4)], return_tensors="pt")
        with torch.no_grad():
            model.model.visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
        with capture.recording(), pytest.raises(RuntimeError, match="did not run inside recording"):
            capture.take()
    finally:
        handle.remove()


def test_the_pixel_map_is_the_photo_the_tower_received(tiny, tiny_family):
    """Merge units, the [C, T, p, p] rows and the T copies are undone: de-normalised, the map is the photo again."""
    model, processor = tiny
    patch = get_family(tiny_family).patch_size
    rng = np.random.default_rng(1)
    sizes = (_frame_photo(tiny_family, 8, 6).size, _frame_photo(tiny_family, 6, 4).size)  # not resized
    photos = [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]
    patches, _, grids = _record(model, photos, processor, pixels=True)
    assert patches.pixels is not None
    maps = pixel_maps(patches, torch.tensor([1, 0]), patch)  # the smaller photo first: it is padded
    ip = processor.image_processor
    mean = torch.tensor(ip.image_mean)[:, None, None]
    std = torch.tensor(ip.image_std)[:, None, None]
    assert maps.shape == (2, 3, 12 * patch, 16 * patch)
    for s, photo in enumerate((photos[1], photos[0])):
        w, h = photo.size
        want = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)
        torch.testing.assert_close(maps[s, :, :h, :w] * std + mean, want, rtol=0, atol=1e-5)
    assert maps[0, :, sizes[1][1]:].abs().sum() == 0 and maps[0, :, :, sizes[1][0]:].abs().sum() == 0


def test_pixel_maps_need_recorded_pixels_and_a_matching_row_width():
    grids = torch.tensor([[1, 2, 2]])
    with pytest.raises(ValueError, match="no pixels recorded"):
        pixel_maps(PatchFeatures(torch.zeros(4, 8), grids), torch.tensor([0]), 14)
    with pytest.raises(ValueError, match="do not hold 3 x T x 14 x 14"):
        pixel_maps(PatchFeatures(torch.zeros(4, 8), grids, torch.zeros(4, 3 * 14 * 14 + 1)), torch.tensor([0]), 14)


def test_two_threads_recording_through_one_tower_at_once_each_take_their_own_photos_patches(tiny):
    """A `Predictor` shared by threads: the second thread's `recording()` cleared the first's record, and its end
    switched the first's recording off, so the head read the other photo's patches, or none ('no pre-merge patch
    features recorded')."""
    model, processor = tiny
    rng = np.random.default_rng(2)
    photos = [Image.fromarray(rng.integers(0, 255, (112, 112 + 56 * k, 3), dtype=np.uint8)) for k in range(2)]
    alone = [_record(model, [photo], processor)[0] for photo in photos]
    visual = model.model.visual
    capture = PatchCapture()
    # Both threads' tower calls end before either takes its patches: each waits for the other in a hook after ours.
    both_ran = threading.Barrier(2, timeout=60)
    handles = [capture.attach(visual), visual.register_forward_hook(lambda *_: both_ran.wait())]
    taken: dict[int, PatchFeatures | Exception] = {}

    def record(k: int) -> None:
        enc = processor.image_processor(images=[photos[k]], return_tensors="pt")
        try:
            with torch.no_grad(), capture.recording():
                visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
                both_ran.wait()  # the other thread is inside its recording still, or has left it
                taken[k] = capture.take()
        except Exception as e:  # noqa: BLE001 - the thread's failure is the test's to report
            taken[k] = e

    run_together(record, [(k,) for k in range(2)], handles)
    for k in range(2):
        assert isinstance(taken[k], PatchFeatures), taken[k]
        assert torch.equal(taken[k].grid_thw, alone[k].grid_thw)
        torch.testing.assert_close(taken[k].features, alone[k].features, rtol=0, atol=1e-6)


def test_a_copied_capture_records_for_its_own_model_and_none_of_the_originals_record(tiny):
    """GRPO's frozen reference is a deep copy of the model (rl/trainer.py): its capture is copied with it, records
    nothing of the original's, and a per-thread record could not be copied at all."""
    model, processor = tiny
    original = PatchCapture(pixels=True)
    enc = processor.image_processor(images=[_frame_photo(model.config.model_type, 4, 4)], return_tensors="pt")
    handle = original.attach(model.model.visual)
    try:
        with torch.no_grad(), original.recording():
            model.model.visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
            copied = copy.deepcopy(original)
            assert original.take().pixels is not None
            with pytest.raises(RuntimeError, match="did not run inside recording"):
                copied.take()
    finally:
        handle.remove()
    assert copied.pixels is True
