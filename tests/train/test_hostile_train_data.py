"""Data a run is pointed at by mistake: refused before anything is written, naming the file and the line."""

import shutil

import pytest

from bbuvl.data.labels import DEFAULT_HIERARCHY
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


def test_a_label_too_long_for_the_heads_captions_is_refused_before_the_first_step(run_config, small_dataset, tmp_path):
    """A 500-character label on a training photo failed the run at the step that drew it ("image 0 of the batch,
    object 1: caption of 500 tokens"), after the steps before it: hours into a real run, and naming no label or line."""
    import json

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[5])
    row["objects"][0]["desc"] = "机柜空间/" + "L" * 500
    lines[5] = json.dumps(row, ensure_ascii=False)
    (data / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    hierarchy = tmp_path / "hierarchy.json"
    shipped = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    shipped["categories"]["机柜空间"]["attributes"]["L" * 500] = {"gloss": "long", "states": {}}
    hierarchy.write_text(json.dumps(shipped, ensure_ascii=False), encoding="utf-8")
    cfg = run_config(f"data.train={data / 'train.jsonl'}", "data.teachers=null", "data.val=null",
                     f"data.hierarchy={hierarchy}",
                     "detection.caption_max_tokens=32")
    with pytest.raises(ValueError, match=r"^detection.caption_max_tokens \(32\) is shorter than the caption of label "
                                         rf"'机柜空间/L{{114}}\.\.\.L{{39}}' \(507 characters\) \(\d+ tokens and its end\), "
                                         rf"first at {data / 'train.jsonl'}:6; raise detection.caption_max_tokens to "
                                         r"\d+, or shorten the label"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_the_check_command_a_refused_dataset_names_pastes_whole_from_a_folder_with_a_space(run_config, small_dataset,
                                                                                           tmp_path):
    """The message ends with the command that lists every error: `bbuvl data check /data/my set/train.jsonl`, pasted,
    checked two files that are not there."""
    import json
    import shlex

    data = tmp_path / "my set"
    shutil.copytree(small_dataset, data)
    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[1])
    row["objects"][0]["bbox_2d"] = [0, 0, 9999, 9999]  # outside the photo
    lines[1] = json.dumps(row, ensure_ascii=False)
    (data / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = run_config(f"data.train={data / 'train.jsonl'}", "data.teachers=null", "data.val=null")
    with pytest.raises(ValueError, match="lists every one") as e:
        train(cfg, progress=False)
    command = str(e.value).rsplit("(`", 1)[1].split("`", 1)[0]
    assert shlex.split(command) == ["bbuvl", "data", "check", str(data / "train.jsonl")]
