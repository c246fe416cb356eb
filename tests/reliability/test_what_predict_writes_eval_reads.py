"""Class 5: what one command writes, the next one reads: every predictions file predict writes, eval and viz accept."""

import json
import logging
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.infer.batch import PredictJob, photo_names, run_predictions
from bbuvl.infer.output import input_root
from bbuvl.infer.predictor import Predictor


@pytest.fixture
def mute_head(trained_checkpoint) -> Predictor:
    """The trained checkpoint with a head whose captions end at once: its output bias points at the end token."""
    predictor = Predictor.load(trained_checkpoint, device="cpu")
    head = predictor.model.detection_head
    with torch.no_grad():
        eos = head.token_embedding.weight[head.eos_token_id].float()
        head.caption_out.bias.copy_(1e3 * eos / eos.norm())
    return predictor


def eval_and_viz_accept(pred: Path, gt: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["viz", str(pred), str(tmp_path / "viz_pred")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["viz", str(gt), str(tmp_path / "viz_both"), "--pred", str(pred)])
    assert r.exit_code == 0, r.output


def test_a_head_caption_that_ends_at_once_never_becomes_an_empty_label(mute_head, small_dataset, caplog):
    gt = small_dataset / "val.jsonl"
    paths = [str(input_root(gt) / name) for name in photo_names(gt)]
    with caplog.at_level(logging.WARNING, logger="bbuvl.infer.predictor"):
        free = mute_head.predict_lines(paths, "head", constrained=False)
    assert all(line["error"] is None and line["objects"] == [] for line in free)
    assert "caption came out empty were left out" in caplog.text
    named = mute_head.predict_lines(paths, "head", constrained=True)
    labels = [o["label"] for line in named for o in line["objects"]]
    assert labels and set(labels) <= set(mute_head.prompt.labels)


@pytest.mark.parametrize("constrained", [True, False])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_what_a_mute_head_predicts_eval_and_viz_read(mute_head, small_dataset, tmp_path, constrained):
    gt = small_dataset / "val.jsonl"
    out = tmp_path / "pred.jsonl"
    job = PredictJob(photo_names(gt), out, "head", 2, source=str(gt), checkpoint="ckpt", root=input_root(gt))
    run_predictions(job, lambda paths: mute_head.predict_lines(paths, "head", constrained=constrained))
    eval_and_viz_accept(out, gt, tmp_path)


@pytest.mark.parametrize("args", [["--mode", "head"], ["--mode", "head", "--no-constrained"], ["--mode", "name"],
                                  ["--mode", "generate", "--no-constrained"]])
def test_every_file_predict_writes_eval_and_viz_read(trained_checkpoint, small_dataset, tmp_path, args):
    gt = small_dataset / "val.jsonl"
    out = tmp_path / "pred.jsonl"
    r = CliRunner().invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(gt), "-o", str(out), "--device", "cpu",
                                 *args])
    assert r.exit_code == 0, r.output
    assert all(o["label"].strip() for line in out.read_text(encoding="utf-8").splitlines()
               for o in json.loads(line)["objects"])
    eval_and_viz_accept(out, gt, tmp_path)
