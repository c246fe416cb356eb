"""A FIFO given as a file the run side reads (predict's --teachers and --labels, serve's --api-key-file) was opened and
waited on for ever: predict hashed the teachers file for its resume key, serve read its keys before it listened. Each
is now refused at once, naming what it is, as eval refuses one for --hierarchy; a folder is named as a folder."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


@contextmanager
def released_after(pipe: Path, seconds: float = 20.0) -> Iterator[list[bool]]:
    """Give a reader stuck on `pipe` an end of file after `seconds`, so that a command that waits on it fails this test
    instead of hanging it; the list yielded holds one True for each reader that had to be released."""
    done, released = threading.Event(), []

    def release() -> None:
        while not done.wait(seconds):
            try:
                os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
                released.append(True)
            except OSError:  # no reader: nothing waits on it
                pass

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield released
    finally:
        done.set()
        thread.join()


def cases(trained_checkpoint: Path, tiny_model_dir: Path, small_dataset: Path, tmp_path: Path, given: Path) -> dict:
    data = ["-i", small_dataset / "val.jsonl", "-o", tmp_path / "pred.jsonl", "--device", "cpu"]
    return {
        "--teachers": (["predict", "-c", trained_checkpoint, "--mode", "teachers", "--teachers", given, *data],
                       "teachers JSONL file"),
        "--labels": (["predict", "-c", tiny_model_dir, "--labels", given, *data], "labels JSON file"),
        "--api-key-file": (["serve", "-c", trained_checkpoint, "--api-key-file", given, "--port", "0", "--device", "cpu"],
                           "key file"),
    }


@pytest.mark.parametrize("option", ["--teachers", "--labels", "--api-key-file"])
def test_a_fifo_or_a_folder_given_as_a_file_is_refused_at_once(trained_checkpoint, tiny_model_dir, small_dataset,
                                                              tmp_path, option):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    folder = tmp_path / "folder"
    folder.mkdir()
    for given, kind in ((pipe, "a FIFO (named pipe)"), (folder, "a folder")):
        argv, expected = cases(trained_checkpoint, tiny_model_dir, small_dataset, tmp_path, given)[option]
        with released_after(pipe) as released:
            text = refused(invoke(argv), f"{given}: {kind}, not a {expected} ({option})")
        assert not released
        assert "Loading weights" not in text and not (tmp_path / "pred.jsonl").exists()


def test_a_fifo_the_run_config_names_as_its_hierarchy_is_refused_at_once(trained_checkpoint, small_dataset, tmp_path):
    import shutil

    from bbuvl.config import dump_config, read_run_config

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, ckpt)
    pipe = tmp_path / "hierarchy.json"
    os.mkfifo(pipe)
    cfg = read_run_config(ckpt)
    cfg.data.hierarchy = str(pipe)
    (ckpt / "bbuvl.yaml").write_text(dump_config(cfg), encoding="utf-8")
    with released_after(pipe) as released:
        text = refused(invoke(["predict", "-c", ckpt, "-i", small_dataset / "val.jsonl", "-o", tmp_path / "pred.jsonl",
                               "--device", "cpu"]), f"{pipe}: a FIFO (named pipe), not a file to read")
    assert not released and "Loading weights" not in text
