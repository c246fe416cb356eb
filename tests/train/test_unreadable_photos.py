"""A photo that cannot be read when it is drawn (cut short, or replaced, after the start read its header): another
sample is trained in its place and the photo is named file:line, where the run used to end at that step."""

import shutil

import pytest

from bbuvl.data.images import ImageError
from bbuvl.data.schema import read_records
from bbuvl.train.dataset import UNREADABLE_IN_A_ROW
from bbuvl.train.trainer import train


def _run_on_copy(run_config, small_dataset, tmp_path, cut: list[int], steps: int):
    """The config of a run on a copy of the small dataset whose training photos `cut` (indices) are cut short."""
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    records = read_records(data / "train.jsonl")
    for i in cut:
        photo = data / records[i].image
        raw = photo.read_bytes()
        photo.write_bytes(raw[:len(raw) // 2])  # the header is whole: the start's check passes, decoding fails
    cfg = run_config(f"data.train={data / 'train.jsonl'}", "data.teachers=null", "data.teacher_ratio=0",
                     f"training.max_steps={steps}")
    return cfg, data, records


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_photo_cut_short_is_replaced_by_another_sample_and_named_by_its_line(run_config, small_dataset, tmp_path):
    # 8 photos at batch 2: 5 steps draw every one of them
    cfg, data, records = _run_on_copy(run_config, small_dataset, tmp_path, cut=[1], steps=5)
    # The refit reads every training photo after training: it goes on too (any overlap pairs a query with an object)
    cfg.detection.caption_refit.steps, cfg.detection.caption_refit.min_iou = 2, 1e-6
    result = train(cfg, progress=False)
    [named] = result["unreadable"]
    assert named.startswith(f"{data / 'train.jsonl'}:2: ") and records[1].image in named
    assert "cannot decode image" in named
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()


def test_a_run_whose_photos_cannot_be_read_at_all_stops_naming_the_first(run_config, small_dataset, tmp_path):
    cfg, data, _ = _run_on_copy(run_config, small_dataset, tmp_path, cut=list(range(8)), steps=2)
    with pytest.raises(ImageError, match=rf"{UNREADABLE_IN_A_ROW} samples in a row have a photo that cannot be read, "
                                         rf"the first {data / 'train.jsonl'}:\d+: "):
        train(cfg, progress=False)
