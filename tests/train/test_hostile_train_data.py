"""Data a run is pointed at by mistake: refused before anything is written, naming the file and the line."""

import shutil

import pytest

from bbuvl.train.held_out import HeldOutError
from bbuvl.train.trainer import train


def test_a_validation_photo_that_is_also_a_training_photo_is_refused_naming_its_line(run_config, small_dataset, tmp_path):
    """A training line copied into data.val (or two datasets joined) trained on a validation photo, silently: only a
    teacher pool or the refit's photos were compared with data.val photo by photo, data.train only as a whole file."""
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()
    (data / "val.jsonl").write_text((data / "val.jsonl").read_text(encoding="utf-8") + lines[2] + "\n", encoding="utf-8")
    cfg = run_config(f"data.train={data / 'train.jsonl'}", f"data.val={data / 'val.jsonl'}", "data.teachers=null")
    with pytest.raises(HeldOutError, match=rf"^{data / 'train.jsonl'}:3: training photo .* is also a photo of data.val "
                                           rf"{data / 'val.jsonl'} \(1 training photo in all\)"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_validation_photo_shown_as_a_training_lines_teacher_is_refused_naming_its_line(run_config, small_dataset,
                                                                                          tmp_path):
    """A training line of the explicit form (`{"teachers": [...], "student": ...}`) whose teacher is a validation
    photo showed its answer in training, silently: only the students and the teacher pool were compared."""
    import json

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()
    val = json.loads((data / "val.jsonl").read_text(encoding="utf-8").splitlines()[0])
    lines[1] = json.dumps({"teachers": [val], "student": json.loads(lines[1])}, ensure_ascii=False)
    (data / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = run_config(f"data.train={data / 'train.jsonl'}", f"data.val={data / 'val.jsonl'}", "data.teachers=null")
    with pytest.raises(HeldOutError, match=rf"^{data / 'train.jsonl'}:2: teacher photo .* of this training line is also "
                                           rf"a photo of data.val {data / 'val.jsonl'} \(1 in all\)"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()
