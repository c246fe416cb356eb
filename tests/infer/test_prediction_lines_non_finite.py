"""`bbuvl eval` on predictions holding NaN, an infinity or null for a coordinate (an older bbu-vl wrote NaN for a
diverged head; or a hand edit): refused, naming the file and line and spelling the value as the file does, never a
traceback nor a NaN box scored."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from bbuvl.cli.evaluate import evaluate

app = typer.Typer()
app.command("eval")(evaluate)
app.command("other")(lambda: None)  # two commands: `eval` is then named on the command line


@pytest.mark.parametrize("written", ["NaN", "Infinity", "-Infinity", "null"])
def test_eval_names_the_line_of_a_coordinate_that_is_no_number(small_dataset, tmp_path, written):
    good = {"image": "images/val_00000.jpg", "width": 224, "height": 168, "raw": None, "error": None,
            "objects": [{"bbox_2d": [44.8, 56.2, 175.4, 80.3], "label": "机柜空间/非满载", "score": 0.9}]}
    pred = tmp_path / "predictions.jsonl"
    bad = json.dumps({**good, "image": "images/val_00001.jpg"}, ensure_ascii=False).replace(
        "[44.8, 56.2, 175.4, 80.3]", f"[36.2, {written}, 163.3, 152.5]")
    pred.write_text(json.dumps(good, ensure_ascii=False) + "\n" + bad + "\n", encoding="utf-8")
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(small_dataset / "val.jsonl"),
                                      "--out", str(out)])
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert f"{pred}:2: objects[0].bbox_2d: expected 4 numbers [x1, y1, x2, y2], got [36.2, {written}, 163.3, 152.5]" \
        in text, text
    assert "no coordinates" in text and "predict the photo again" in text
    assert not out.exists()
