"""The commands a user runs, end to end on the tiny model: train --dry-run, predict, eval with a report."""

import json

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.config import dump_config

runner = CliRunner()


def test_train_dry_run_prints_tokens_and_memory(run_config, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(dump_config(run_config()), encoding="utf-8")
    result = runner.invoke(app, ["train", str(cfg), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "vision_tokens" in result.output and "peak_rss_mb" in result.output and "trainable_per_group" in result.output


def test_train_rejects_a_misspelt_key_before_loading_anything(run_config, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(dump_config(run_config()), encoding="utf-8")
    result = runner.invoke(app, ["train", str(cfg), "training.learning_rate=1e-4"])
    assert result.exit_code == 2
    assert "unknown key 'training.learning_rate'" in result.output


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_then_eval_writes_lines_metrics_and_report(trained_checkpoint, small_dataset, tmp_path):
    pred = tmp_path / "pred.jsonl"
    r = runner.invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(small_dataset / "val.jsonl"), "-o", str(pred),
                            "--mode", "head"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(l) for l in pred.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 and all(l["error"] is None for l in lines)
    metrics = tmp_path / "metrics.json"
    r = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(small_dataset / "val.jsonl"), "--out", str(metrics),
                            "--report", str(tmp_path / "report")])
    assert r.exit_code == 0, r.output
    m = json.loads(metrics.read_text(encoding="utf-8"))
    assert set(m) == {"AP", "AP50", "AP75", "AP_agnostic", "AP50_agnostic", "per_category", "label_accuracy",
                      "parse_failure_rate", "duplicate_rate", "errors", "prior", "faults", "settings"}
    assert (tmp_path / "report" / "index.html").exists()
    # Sizes in vision tokens come from the checkpoint that wrote the predictions (its manifest).
    details = json.loads((tmp_path / "metrics.coco.json").read_text(encoding="utf-8"))
    buckets = details["size_tokens"]["buckets"]
    assert sum(b["objects"] for b in buckets.values()) == sum(len(json.loads(l)["objects"]) for l in
                                                             (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines())
    assert "By size in vision tokens" in r.output
    assert "Small parts" in (tmp_path / "report" / "index.html").read_text(encoding="utf-8")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_objectness_threshold_keeps_every_query_at_zero_and_none_at_one(trained_checkpoint, small_dataset, tmp_path):
    from bbuvl.model.checkpoint import read_run_config

    queries = read_run_config(trained_checkpoint).detection.num_queries
    counts = {}
    for t in ("0", "1"):
        pred = tmp_path / f"pred{t}.jsonl"
        r = runner.invoke(app, ["predict", "-c", str(trained_checkpoint), "-i", str(small_dataset / "val.jsonl"),
                                "-o", str(pred), "--mode", "head", "--objectness-threshold", t])
        assert r.exit_code == 0, r.output
        counts[t] = [len(json.loads(l)["objects"]) for l in pred.read_text(encoding="utf-8").splitlines()]
    assert counts["0"] == [queries] * len(counts["0"])
    assert counts["1"] == [0] * len(counts["1"])
