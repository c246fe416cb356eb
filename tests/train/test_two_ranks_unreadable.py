"""The end of a run under torchrun names the photos any rank could not read when drawn (train/all_ranks.py): the
first process printed its own alone, and a photo that only the second rank drew went unsaid."""

import os
import shutil
import subprocess

import pytest

from bbuvl.data.schema import read_records
from tests.launch import launch_command

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("cut", [0, 1])
def test_a_photo_cut_short_is_named_at_the_end_whichever_rank_drew_it(run_config, small_dataset, tmp_path, cut):
    # Two photos, two ranks of batch 1, one step: each rank draws one of them, and one of the two cases is the
    # second rank's. Before: that case ended without a word of the photo (its warning scrolled past mid-log).
    from bbuvl.config import dump_config

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    (data / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    photo = data / read_records(data / "train.jsonl")[cut].image
    raw = photo.read_bytes()
    photo.write_bytes(raw[:len(raw) // 2])  # the header is whole: the start's check passes, decoding fails
    cfg = run_config(f"data.train={data / 'train.jsonl'}", "data.val=null", "data.teachers=null", "data.teacher_ratio=0",
                     "training.max_steps=1", "training.per_device_batch_size=1")
    (tmp_path / "run.yaml").write_text(dump_config(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "COLUMNS": "400"}
    done = subprocess.run(launch_command(2, 29571 + cut) + ["train", str(tmp_path / "run.yaml")], env=env, timeout=600,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "photos that could not be read when drawn, another sample trained in each one's place: 1" in done.stdout, \
        done.stdout[-3000:]
    assert f"{data / 'train.jsonl'}:{cut + 1}: {photo}: cannot decode image" in done.stdout, done.stdout[-3000:]


@pytest.mark.parametrize("cut", [0, 1])
def test_a_validation_photo_cut_short_is_named_as_evaluated_in_anothers_place_whichever_rank_drew_it(
        run_config, small_dataset, tmp_path, cut):
    # The two validation photos, one a rank. Before: its warning said "the next sample is trained in its place" (no
    # sample of data.val is trained, the next one is evaluated twice), and the end said nothing of it on either rank.
    from bbuvl.config import dump_config

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    photo = data / read_records(data / "val.jsonl")[cut].image
    raw = photo.read_bytes()
    photo.write_bytes(raw[:len(raw) // 2])  # the header is whole: the start's check passes, decoding fails
    cfg = run_config(f"data.train={data / 'train.jsonl'}", f"data.val={data / 'val.jsonl'}", "data.teachers=null",
                     "data.teacher_ratio=0", "training.max_steps=1", "training.per_device_batch_size=1",
                     "training.eval_steps=1")
    (tmp_path / "run.yaml").write_text(dump_config(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "COLUMNS": "400"}
    done = subprocess.run(launch_command(2, 29573 + cut) + ["train", str(tmp_path / "run.yaml")], env=env, timeout=600,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    where = f"{data / 'val.jsonl'}:{cut + 1}"
    assert f"{where}: a photo of this sample cannot be read ({photo}: cannot decode image" in done.stderr
    assert "the next sample is evaluated in its place" in done.stderr and "trained in its place" not in done.stderr
    assert ("validation photos that could not be read when evaluated, the next sample evaluated in each one's place "
            "(eval_loss counts it twice): 1") in done.stdout, done.stdout[-3000:]
    assert f"  {where}: {photo}: cannot decode image" in done.stdout, done.stdout[-3000:]
    assert "photos that could not be read when drawn" not in done.stdout
