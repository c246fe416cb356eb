"""A dataset line may name a FIFO where its photo should be (a photo being streamed in, a named pipe left by a tool):
predict opened it to hash it for the resume key and waited on it for ever, before predicting a single photo. It is now
an error line naming what it is, like a missing photo, and every other photo is predicted; a resume keeps them."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke
from tests.reliability.test_run_inputs_that_are_no_files import released_after

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_fifo_named_as_a_photo_is_an_error_line_and_the_rest_are_predicted(trained_checkpoint, small_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_dataset / "images", data / "images")
    records = [json.loads(line) for line in (small_dataset / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    pipe = data / "images" / "streamed.jpg"
    os.mkfifo(pipe)
    records.append({**records[0], "images": ["images/streamed.jpg"]})
    gt = data / "val.jsonl"
    gt.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    argv = ["predict", "-c", trained_checkpoint, "-i", gt, "-o", out, "--mode", "head", "--device", "cpu"]
    with released_after(pipe) as released:
        r = invoke(argv)
    assert r.exit_code == 0, r.output
    assert not released  # no read of it waited for a writer
    lines = {line["image"]: line for line in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert len(lines) == len(records)
    assert "a FIFO (named pipe)" in lines["images/streamed.jpg"]["error"]
    assert sum(line["error"] is None for line in lines.values()) == len(records) - 1
    with released_after(pipe) as released:
        again = invoke(argv)
    assert again.exit_code == 0 and "0 predicted" in " ".join(again.output.split()), again.output
    assert not released
