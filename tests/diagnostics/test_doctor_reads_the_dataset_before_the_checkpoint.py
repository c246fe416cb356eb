"""doctor features, coordinates and landscape (one code path: cli/doctor.py `_rows`) read the lines of a dataset they are given, and choose its photos,
before the checkpoint loads: a malformed line was named only once every weight had loaded (minutes on a real model),
and a checkpoint's own problem hid it. The checkpoint here is damaged so that reading it first shows."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app


@pytest.mark.parametrize("command", ["features", "landscape"])
def test_a_malformed_dataset_line_is_named_before_the_checkpoint_is_read(trained_checkpoint, small_dataset, tmp_path,
                                                                        command):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, checkpoint)
    os.truncate(checkpoint / "detection_head.safetensors", 1000)  # what loading it would say first
    first = json.loads((small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()[0])
    first["images"] = [str(small_dataset / first["images"][0])]  # a photo that is there: line 1 is probed
    data = tmp_path / "val.jsonl"
    data.write_text(json.dumps(first) + '\n{"images": ["a.jpg"], \n', encoding="utf-8")  # line 2 cut short
    given = {"features": ["--data", str(data), "--out", str(tmp_path / "f.png"), "--samples", "2"],
             "landscape": [str(data), "--out", str(tmp_path / "l.png"), "--samples", "2"]}[command]
    result = CliRunner().invoke(app, ["doctor", command, str(checkpoint), *given, "--device", "cpu"],
                                env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    assert result.exit_code == 2, said
    assert said.startswith(f"error: {data}:2: invalid JSON"), said  # before: the damaged detection_head.safetensors
    assert len(result.output.strip().splitlines()) == 1 and not list(tmp_path.glob("*.png"))


def test_memory_names_a_photo_its_images_list_lacks_by_file_and_line_before_the_checkpoint_is_read(
        trained_checkpoint, small_dataset, tmp_path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, checkpoint)
    os.truncate(checkpoint / "detection_head.safetensors", 1000)
    lines = [json.loads(line) for line in (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()[:2]]
    lines[0]["images"] = [str(small_dataset / lines[0]["images"][0])]
    lines[1]["images"] = [str(tmp_path / "moved away.jpg")]
    data = tmp_path / "val.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    result = CliRunner().invoke(app, ["doctor", "memory", str(checkpoint), "--images", str(data), "--batch-size", "2",
                                      "--n", "5", "--out", str(tmp_path / "m.png"), "--device", "cpu"],
                                env={"COLUMNS": "400"})
    said = " ".join(result.output.split())
    # Before: the damaged checkpoint, and once it was whole '.../moved away.jpg: image file not found' with no line.
    assert result.exit_code == 2 and said.startswith(f"error: {data}:2: {tmp_path / 'moved away.jpg'}: "), said
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "m.png").exists()
