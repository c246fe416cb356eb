"""An upgrade between a kill and its resume: one predictions file never holds two programs' lines.

A predictions manifest names the program that wrote its lines (bbu-vl's version and its files' digest, torch,
transformers, tokenizers, Pillow: bbuvl/versions.py). `predict` resumes only under the same one; a manifest written
before manifests named it resumes as before. `eval` records the program on both sides of a baseline and says when
they differ. Another install is stood in for by the version its manifest records, as one written by it would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.versions import SOURCE, software, source_digest

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(args: list) -> object:
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


@pytest.fixture(scope="module")
def predicted(trained_checkpoint, small_dataset, tmp_path_factory) -> dict[str, Path]:
    """One head-mode predict over the small dataset's validation photos, and its METRICS.json."""
    root = tmp_path_factory.mktemp("program")
    out = root / "pred.jsonl"
    r = invoke(["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "-o", out, "--mode", "head",
                "--device", "cpu"])
    assert r.exit_code == 0, r.output
    metrics = root / "metrics.json"
    r = invoke(["eval", "--pred", out, "--gt", small_dataset / "val.jsonl", "--out", metrics])
    assert r.exit_code == 0, r.output
    return {"ckpt": trained_checkpoint, "input": small_dataset / "val.jsonl", "out": out, "metrics": metrics}


def copy_of(predicted: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The predictions and their manifest, copied for one test to change."""
    out = tmp_path / "pred.jsonl"
    shutil.copy(predicted["out"], out)
    manifest = out.with_name(out.name + ".predict.json")
    shutil.copy(predicted["out"].with_name(predicted["out"].name + ".predict.json"), manifest)
    return out, manifest


def rewrite_software(manifest: Path, change) -> None:  # noqa: ANN001 - a function of the recorded table
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["key"]["software"] = change(data["key"]["software"])
    manifest.write_text(json.dumps(data), encoding="utf-8")


def resume(predicted: dict[str, Path], out: Path) -> object:
    return invoke(["predict", "-c", predicted["ckpt"], "-i", predicted["input"], "-o", out, "--mode", "head",
                   "--device", "cpu"])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_manifest_names_the_program_that_wrote_the_lines(predicted):
    manifest = json.loads(predicted["out"].with_name("pred.jsonl.predict.json").read_text(encoding="utf-8"))
    recorded = manifest["key"]["software"]
    assert recorded == software()
    assert {"bbuvl", SOURCE, "torch", "transformers", "pillow"} <= set(recorded)


@pytest.mark.parametrize(("change", "named"), [
    (lambda s: s | {"torch": "1.0.0"}, "torch 1.0.0 (now "),
    (lambda s: s | {SOURCE: "0" * 16}, "bbuvl's own files changed (source 0000000000000000, now "),
], ids=["torch", "bbuvl-files"])
def test_predict_refuses_to_resume_lines_another_program_wrote(predicted, tmp_path, change, named):
    out, manifest = copy_of(predicted, tmp_path)
    rewrite_software(manifest, change)
    before = out.read_bytes()
    r = resume(predicted, out)
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "holds predictions of another run" in text and "written by another program" in text, text
    assert named in text and "--overwrite" in text, text
    assert out.read_bytes() == before


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_manifest_written_before_manifests_named_their_program_resumes_as_before(predicted, tmp_path):
    out, manifest = copy_of(predicted, tmp_path)
    data = json.loads(manifest.read_text(encoding="utf-8"))
    del data["key"]["software"]
    manifest.write_text(json.dumps(data), encoding="utf-8")
    before = out.read_bytes()
    r = resume(predicted, out)
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == before  # every photo had its line: nothing predicted again


def test_the_source_digest_follows_every_file_of_the_package_but_not_its_compiled_caches(tmp_path):
    package = tmp_path / "bbuvl"
    (package / "serve" / "static").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n", encoding="utf-8")
    (package / "serve" / "static" / "app.js").write_text("let a = 1;\n", encoding="utf-8")
    first = source_digest(package)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0compiled")
    assert source_digest(package) == first
    (package / "serve" / "static" / "app.js").write_text("let a = 2;\n", encoding="utf-8")  # the page is the program too
    assert source_digest(package) != first
    (package / "serve" / "static" / "app.js").write_text("let a = 1;\n", encoding="utf-8")
    (package / "serve" / "static" / "app.js").rename(package / "serve" / "static" / "page.js")  # same bytes, moved
    assert source_digest(package) != first


def test_eval_records_both_programs_and_a_baseline_made_by_another_says_so(predicted, tmp_path):
    metrics = json.loads(predicted["metrics"].read_text(encoding="utf-8"))
    assert metrics["settings"]["software"]["bbuvl"] and "faster-coco-eval" in metrics["settings"]["software"]
    assert metrics["settings"]["predictions"]["software"] == software()
    baseline = tmp_path / "baseline.json"
    metrics["settings"]["predictions"]["software"] |= {"transformers": "4.0.0"}
    baseline.write_text(json.dumps(metrics), encoding="utf-8")
    r = invoke(["eval", "--pred", predicted["out"], "--gt", predicted["input"], "--out", tmp_path / "m.json",
                "--baseline", baseline])
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "the baseline was predicted by another program (transformers 4.0.0 (now " in text, text
    assert "scored by another program" not in text  # the same program scored both


def test_bbuvl_version_prints_the_program_as_outputs_record_it():
    r = invoke(["--version"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [f"{name} {version}" for name, version in software().items()]
