"""`bbuvl eval` of a plain model folder's predictions (the README's zero-shot baseline): the folder is right there,
but its note said the checkpoint that wrote them was 'not at hand' and to give --frame, which refuses that folder."""

import json

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.tiny.model import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def run(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_of_a_plain_folders_predictions_says_it_saved_no_frame_not_that_it_is_gone(small_dataset, tmp_path):
    model = build_tiny_model(tmp_path / "base", seed=0, family="qwen2_5_vl")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(["线缆", "标签贴纸"], ensure_ascii=False), encoding="utf-8")
    pred = tmp_path / "base.jsonl"
    code, said = run("predict", "-c", model, "--labels", labels, "-i", small_dataset / "val.jsonl", "-o", pred,
                     "--max-new-tokens", "8", "--device", "cpu")
    assert code == 0, said
    code, said = run("eval", "--pred", pred, "--gt", small_dataset / "val.jsonl", "--out", tmp_path / "m.json")
    assert code == 0, said
    assert "not at hand" not in said, said
    assert (f"no AP or recall by size in vision tokens: {model}, which wrote the predictions, holds no "
            "coordinate_contract.json (a plain model folder); give --frame with a checkpoint of the same frame, "
            "saved by bbuvl train") in said, said
