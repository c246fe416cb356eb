"""Options of the run side that the chosen checkpoint or mode never reads were taken without a word: `--lang en` on a
trained checkpoint (it answers in the language its prompt was trained in), and serve's `--fewshot-threshold` or
`--fewshot-backbone` without `--fewshot`. Each is now refused, naming why, before any model loads; where the option
does apply (a plain model folder's --lang) it is taken."""

from __future__ import annotations

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_lang_on_a_trained_checkpoint_is_refused(trained_checkpoint, small_dataset, tmp_path, command):
    args = ["-i", small_dataset / "val.jsonl", "-o", tmp_path / "pred.jsonl"] if command == "predict" else ["--port", "0"]
    text = refused(invoke([command, "-c", trained_checkpoint, "--device", "cpu", "--lang", "en", *args]),
                   f"--lang is for a plain model folder; {trained_checkpoint} is a bbu-vl checkpoint and answers in the "
                   "language its prompt was trained in")
    assert "Loading weights" not in text and not (tmp_path / "pred.jsonl").exists()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_lang_on_a_plain_model_folder_is_taken(tiny_model_dir, small_dataset, tmp_path):
    out = tmp_path / "pred.jsonl"
    r = invoke(["predict", "-c", tiny_model_dir, "--labels", small_dataset / "labels.json", "--lang", "en",
                "-i", small_dataset / "val.jsonl", "-o", out, "--device", "cpu", "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == 2


@pytest.mark.parametrize("option", [["--fewshot-threshold", "0.9"], ["--fewshot-backbone", "pixels:8"]])
def test_a_fewshot_option_without_fewshot_is_refused(trained_checkpoint, option):
    text = refused(invoke(["serve", "-c", trained_checkpoint, "--device", "cpu", "--port", "0", *option]),
                   f"{option[0]} applies only with --fewshot")
    assert "Loading weights" not in text
