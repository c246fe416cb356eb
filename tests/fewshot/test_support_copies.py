"""A photo copied twice into a ready `shot<K>` folder counts once, as it does when K photos are drawn from the class."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli.fewshot import app
from bbuvl.fewshot.support import read_support, sample_support


def put(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def test_a_photo_copied_into_a_shot_folder_weighs_once_as_in_a_class_it_is_drawn_from(tmp_path):
    flat, ready = tmp_path / "flat", tmp_path / "ready"
    x = put(flat / "a" / "x.png", 1)
    shutil.copyfile(x, flat / "a" / "x_copy.png")
    put(flat / "a" / "y.png", 2)
    for i in range(3):
        put(flat / "b" / f"{i}.png", 10 + i)
    for path in flat.rglob("*.png"):  # the same files as ready-made 3-shot sets: a/shot3/, b/shot3/
        target = ready / path.parent.name / "shot3" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    chosen, warnings = sample_support(read_support(ready), 3)
    assert [p.name for p in chosen["a"]] == ["x.png", "y.png"] and len(chosen["b"]) == 3
    assert len(warnings) == 1 and "'a'" in warnings[0] and "2 distinct" in warnings[0]
    query = put(tmp_path / "q.png", 3)
    scores = {}
    for support in (flat, ready):
        out = tmp_path / f"{support.name}.jsonl"
        result = CliRunner().invoke(app, ["classify", "--support", str(support), "--query", str(query), "--backbone",
                                          "pixels:8", "--shots", "3", "--out", str(out), "--no-cache"])
        assert result.exit_code == 0, result.output + repr(result.exception)
        assert "fewer than 3 shots" in " ".join(result.output.split())
        scores[support.name] = json.loads(out.read_text(encoding="utf-8"))["scores"]
    assert scores["ready"] == scores["flat"]  # x and its copy were two of a's three rows of the mean
