"""bbuvl/outputs.py: outputs are never inputs, and only their own writer (or --overwrite) replaces them."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from bbuvl.infer.output import OutputLock, OutputError, discard_output, manifest_path
from bbuvl.outputs import LEDGER, OutputConflict, check_not_inputs, claim_outputs, same_path, writer_of


def test_a_hard_link_and_a_symlink_name_the_same_file(tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_text("x", encoding="utf-8")
    os.link(a, tmp_path / "hard.jsonl")
    (tmp_path / "soft.jsonl").symlink_to(a)
    assert same_path(a, tmp_path / "hard.jsonl") and same_path(a, tmp_path / "soft.jsonl")
    assert not same_path(a, tmp_path / "other.jsonl")


def test_a_folder_output_holding_an_input_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "val.jsonl").write_text("x", encoding="utf-8")
    with pytest.raises(OutputConflict, match="holds the input --gt"):
        check_not_inputs({"--gt": tmp_path / "data" / "val.jsonl"}, folders=[tmp_path / "data"])


def test_a_refused_claim_writes_no_ledger(tmp_path):
    (tmp_path / "m.json").write_text("theirs", encoding="utf-8")
    with pytest.raises(OutputConflict, match="written by someone else.*--overwrite"):
        claim_outputs("eval", {}, [tmp_path / "m.json", tmp_path / "m.coco.json"])
    assert not (tmp_path / LEDGER).exists()


def test_files_inside_a_folder_a_command_wrote_are_that_commands(tmp_path):
    claim_outputs("viz", {}, folders=[tmp_path / "pictures"])
    assert writer_of(tmp_path / "pictures" / "deep" / "0000_a.png") == "viz"
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "0000_a.png").write_bytes(b"png")
    claim_outputs("viz", {}, folders=[tmp_path / "pictures"])  # its own: no --overwrite needed
    with pytest.raises(OutputConflict, match="written by `bbuvl viz`"):
        claim_outputs("eval", {}, [tmp_path / "pictures" / "0000_a.png"])


def test_a_damaged_ledger_makes_nothing_ours(tmp_path):
    claim_outputs("eval", {}, [tmp_path / "m.json"])
    (tmp_path / "m.json").write_text("{}", encoding="utf-8")
    (tmp_path / LEDGER).write_text("{not json", encoding="utf-8")
    with pytest.raises(OutputConflict):
        claim_outputs("eval", {}, [tmp_path / "m.json"])
    claim_outputs("eval", {}, [tmp_path / "m.json"], overwrite=True)
    assert writer_of(tmp_path / "m.json") == "eval"


def test_what_lies_under_an_input_folder_is_kept_even_with_overwrite(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(OutputConflict, match="inside the input CHECKPOINT"):
        claim_outputs("doctor memory", {"CHECKPOINT": ckpt}, [ckpt / "config.json"], overwrite=True)
    claim_outputs("doctor memory", {"CHECKPOINT": ckpt}, [ckpt / "plot.png"])  # nothing there yet: nothing to lose


def test_predict_starting_over_removes_the_file_and_its_manifest_unless_another_run_holds_it(tmp_path):
    out = tmp_path / "pred.jsonl"
    out.write_text('{"image": "a.jpg"}\n', encoding="utf-8")
    manifest_path(out).write_text("{}", encoding="utf-8")
    with OutputLock(out):
        with pytest.raises(OutputError, match="is writing it"):
            discard_output(out)
    assert out.exists()
    discard_output(out)
    assert not out.exists() and not manifest_path(out).exists()


def _claim_many(folder: str, command: str, count: int) -> None:
    for i in range(count):
        claim_outputs(command, {}, files=[Path(folder) / f"{command}_{i}.jsonl"])


def test_commands_writing_into_one_folder_at_once_keep_every_ledger_entry(tmp_path):
    # Two predictions side by side in one folder (as `make demo` runs them): neither may drop the other's entries.
    commands = [f"predict{k}" for k in range(4)]
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in [pool.submit(_claim_many, str(tmp_path), c, 25) for c in commands]:
            done.result()
    for command in commands:
        for i in range(25):
            assert writer_of(tmp_path / f"{command}_{i}.jsonl") == command
