"""A predictions line whose label, photo name or answer holds a JSON escape of half a character (`\\udcff`) reads as
text no file can be written with: eval scored everything, then failed writing METRICS.json with a UnicodeEncodeError
traceback naming no file. It is now refused naming the file, line and field, and nothing is written."""

from __future__ import annotations

import json

import pytest

from tests.eval.test_judging import run
from tests.eval.test_judging import files as files  # noqa: F401 - the fixture


@pytest.mark.parametrize(("field", "says"), [
    ("label", "objects[0].label: '\\udcff"), ("image", "image: "), ("raw", "raw: '\\udcff"), ("error", "error: '\\udcff"),
])
def test_half_a_character_in_a_prediction_is_named_by_line_and_field(files, tmp_path, field, says):
    gt, pred, _ = files
    lines = pred.read_text(encoding="utf-8").splitlines()
    second = json.loads(lines[1])
    if field == "label":
        second["objects"][0]["label"] = "\udcff" + second["objects"][0]["label"]
    else:
        second[field] = "\udcff" + second[field] if field == "image" else "\udcff answer"
    lines[1] = json.dumps(second)  # ASCII escapes, as a JSON writer spells a lone surrogate
    pred.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "m.json"
    output = " ".join(run(gt, pred, out, ok=False).split())
    assert f"{pred}:2: {says}" in output and "is not UTF-8 text" in output, output
    assert "Traceback" not in output and "codec" not in output
    assert not out.exists() and not out.with_name("m.coco.json").exists()
