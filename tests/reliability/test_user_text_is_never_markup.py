"""Class 7: labels, paths and messages that look like Rich markup are printed as they are, never parsed."""

import json

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from bbuvl.cli import app

LABELS = ["[/]", "[bold red]boom", "[link=x]y", "线缆[m6]"]


def dataset(root):
    """A train/val/teachers folder whose labels are all markup-like; one photo per label."""
    rows = []
    for i, label in enumerate(LABELS):
        path = root / "images" / f"[b]{i}.png"  # a markup-like file name too
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (40 * i, 0, 0)).save(path)
        rows.append({"images": [f"images/{path.name}"], "width": 64, "height": 48,
                     "objects": [{"bbox_2d": [2, 2, 30, 30], "desc": label}]})
    for name in ("train.jsonl", "val.jsonl", "teachers.jsonl"):
        (root / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return root


def flat(output: str) -> str:
    return "".join(output.split())


def assert_labels_shown_verbatim(result, labels=LABELS):
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for label in labels:
        assert flat(label) in flat(result.output), (label, result.output)


def test_data_check_and_stats_print_markup_like_labels_verbatim(tmp_path):
    root = dataset(tmp_path / "ds")
    r = CliRunner().invoke(app, ["data", "check", str(root / "train.jsonl")])
    assert r.exit_code == 1 and "4 error(s)" in r.output  # check names the category, so '[/]' shows as '['
    assert_labels_shown_verbatim(r, LABELS[1:])
    assert_labels_shown_verbatim(CliRunner().invoke(app, ["data", "stats", str(root / "train.jsonl")]))


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_prints_markup_like_labels_verbatim_and_writes_its_metrics(tmp_path):
    root = dataset(tmp_path / "ds")
    rows = [json.loads(line) for line in (root / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"image": str(root / r["images"][0]), "width": 64, "height": 48,
                                        "objects": [{"bbox_2d": [2, 2, 30, 30], "label": r["objects"][0]["desc"], "score": 0.9}],
                                        "raw": None, "error": None}, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "[red]metrics.json"
    r = CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(root / "val.jsonl"), "--out", str(out)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert_labels_shown_verbatim(r, LABELS + ["[red]metrics.json"])
    assert json.loads(out.read_text(encoding="utf-8"))["AP50"] == 1.0


def test_doctor_data_prints_markup_like_labels_verbatim(tmp_path):
    root = dataset(tmp_path / "ds")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": {"family": "qwen2_5_vl", "min_pixels": 12544}, "data": {
        "train": str(root / "train.jsonl"), "val": str(root / "val.jsonl"), "teachers": str(root / "teachers.jsonl")}}),
        encoding="utf-8")
    r = CliRunner().invoke(app, ["doctor", "data", str(root), "--config", str(config)], env={"COLUMNS": "200"})
    assert_labels_shown_verbatim(r)


def test_error_messages_keep_their_bracketed_parts(tmp_path):
    missing = tmp_path / "[bold]no-such.jsonl"
    r = CliRunner().invoke(app, ["eval", "--pred", str(missing), "--gt", str(missing), "--out", str(tmp_path / "m.json")])
    assert r.exit_code == 2 and "[bold]no-such.jsonl" in flat(r.output)
    (tmp_path / "x.yaml").write_text("{}\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["config", "check", str(tmp_path / "x.yaml"), "training.[red]lr=1"])
    assert "[red]" in r.output, r.output
