"""`predict` and `choose-tiles` read files the checkpoint's run config names, not the command line: the hierarchy whose
faults judge each photo (data.hierarchy) and, in teachers mode, the teachers JSONL (data.teachers). Neither is ever an
output: `predict --overwrite` deleted the hierarchy named as --out and wrote predictions in its place, and choose-tiles
set aside an --out folder holding it, then failed minutes later on 'no such file'."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bbuvl.config import dump_config, read_run_config
from bbuvl.data.labels import DEFAULT_HIERARCHY
from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


def checkpoint_naming(trained_checkpoint: Path, small_dataset: Path, root: Path) -> tuple[Path, Path, Path]:
    """A copy of the trained checkpoint whose run config names a hierarchy and a teachers file of its own under `root`."""
    ckpt, files = root / "ckpt", root / "files"
    shutil.copytree(trained_checkpoint, ckpt)
    files.mkdir()
    hierarchy, teachers = files / "hierarchy.json", files / "teachers.jsonl"
    shutil.copy(DEFAULT_HIERARCHY, hierarchy)
    shutil.copy(small_dataset / "teachers.jsonl", teachers)
    shutil.copytree(small_dataset / "images", files / "images")  # the teachers' photos, beside their file
    cfg = read_run_config(ckpt)
    cfg.data.hierarchy, cfg.data.teachers = str(hierarchy), str(teachers)
    (ckpt / "bbuvl.yaml").write_text(dump_config(cfg), encoding="utf-8")
    return ckpt, hierarchy, teachers


@pytest.mark.parametrize("mode", ["head", "teachers"])
def test_predict_overwrite_never_replaces_a_file_the_run_config_names(trained_checkpoint, small_dataset, tmp_path, mode):
    ckpt, hierarchy, teachers = checkpoint_naming(trained_checkpoint, small_dataset, tmp_path)
    named = {"head": (hierarchy, "data.hierarchy"), "teachers": (teachers, "data.teachers")}
    out, key = named[mode]
    kept = out.read_bytes()
    refused(invoke(["predict", "-c", ckpt, "-i", small_dataset / "val.jsonl", "-o", out, "--mode", mode, "--device", "cpu",
                    "--overwrite"]),
            f"{out}: is also the input --checkpoint's {key} ({out})")
    assert out.read_bytes() == kept
    assert not out.with_name(out.name + ".predict.json").exists()


def test_choose_tiles_never_takes_a_folder_holding_the_hierarchy_as_its_output(trained_checkpoint, small_dataset, tmp_path):
    ckpt, hierarchy, _ = checkpoint_naming(trained_checkpoint, small_dataset, tmp_path)
    kept = hierarchy.read_bytes()
    refused(invoke(["choose-tiles", "-c", ckpt, "--gt", small_dataset / "val.jsonl", "-o", hierarchy.parent,
                    "--factors", "1", "--device", "cpu", "--overwrite"]),
            # with --overwrite a folder it did not write is refused by what it holds, the hierarchy among it
            f"{hierarchy.parent}: holds {hierarchy.name}", "which `bbuvl choose-tiles` did not write")
    assert hierarchy.read_bytes() == kept
