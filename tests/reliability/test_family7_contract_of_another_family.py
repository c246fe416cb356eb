"""A checkpoint whose coordinate_contract.json is another family's than its config.json is refused, naming both.

A contract copied from another run loaded silently: a Qwen3-VL model read with Qwen2.5-VL's contract answered in
absolute pixels of a frame cut in 28-pixel cells, and one read with Qwen3.5's was prompted with a think block it never
trained with (docs/families.md).
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.data.families import FAMILIES

pytestmark = pytest.mark.usefixtures("one_thread")


def test_predict_refuses_a_checkpoint_whose_contract_is_another_familys_naming_both_files(trained_checkpoint,
                                                                                          small_dataset, tmp_path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, checkpoint)
    contract = checkpoint / "coordinate_contract.json"
    saved = json.loads(contract.read_text(encoding="utf-8"))
    other = FAMILIES["qwen3_vl" if saved["family"] != "qwen3_vl" else "qwen2_5_vl"]
    saved.update(family=other.model_type, factor=other.factor, box_format=other.box_format)
    contract.write_text(json.dumps(saved), encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    r = CliRunner().invoke(app, ["predict", "-c", str(checkpoint), "-i", str(small_dataset / "val.jsonl"),
                                 "-o", str(out), "--mode", "generate", "--device", "cpu"])
    said = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert f"{contract}: family '{other.model_type}'" in said, said
    assert f"{checkpoint / 'config.json'} is a " in said and "as the other family's" in said, said
    assert not out.exists()
