"""An option the chosen mode never reads (`--max-new-tokens` in head mode, `--objectness-threshold` in generate mode,
`--teachers` outside teachers mode) was taken without a word and changed nothing, where the user meant it to: now
refused naming the modes it applies to, before any model loads, as the tile options are without tiles."""

from __future__ import annotations

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("mode", "option", "says"), [
    ("head", ["--max-new-tokens", "5"], "--max-new-tokens applies only with --mode generate or --mode teachers"),
    ("name", ["--max-new-tokens", "5"], "--max-new-tokens applies only with --mode generate or --mode teachers"),
    ("generate", ["--objectness-threshold", "0.9"], "--objectness-threshold applies only with --mode head or --mode name"),
    ("head", ["--teachers", "{teachers}"], "--teachers applies only with --mode teachers"),
])
def test_an_option_the_mode_never_reads_is_refused(trained_checkpoint, small_dataset, tmp_path, mode, option, says):
    out = tmp_path / "pred.jsonl"
    option = [o.format(teachers=small_dataset / "teachers.jsonl") for o in option]
    text = refused(invoke(["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "-o", out,
                           "--mode", mode, "--device", "cpu", *option]), says)
    assert "Loading weights" not in text and not out.exists()


def test_an_option_of_the_mode_is_taken(trained_checkpoint, small_dataset, tmp_path):
    out = tmp_path / "pred.jsonl"
    r = invoke(["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "-o", out, "--mode", "generate",
                "--device", "cpu", "--max-new-tokens", "8"])
    assert r.exit_code == 0, r.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2
