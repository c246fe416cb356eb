"""A resumed output held a line for a photo its input does not hold (added by hand: the resume key ties the output to
one input): it was counted among the photos "already in" the output, kept, and read by eval beside the others.
Merging a sharded run dropped such lines; a one-process resume now drops them too, and says how many."""

from __future__ import annotations

import json

from bbuvl.infer.batch import PredictJob, run_predictions
from tests.reliability.faults import fake_lines

PATHS = [f"/photos/img{i}.jpg" for i in range(4)]


def test_a_line_of_a_photo_the_input_does_not_hold_is_dropped_on_resume_and_not_counted(tmp_path):
    out = tmp_path / "pred.jsonl"
    job = PredictJob(PATHS[:3], out, "head", 2, source="/photos", checkpoint="/ckpt")
    run_predictions(job, fake_lines)
    with out.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"image": "/photos/stranger.jpg", "objects": []}) + "\n")
    stats = run_predictions(PredictJob(PATHS[:3], out, "head", 2, source="/photos", checkpoint="/ckpt"), fake_lines)
    assert (stats["skipped"], stats["dropped"], stats["predicted"]) == (3, 1, 0)
    assert [json.loads(line)["image"] for line in out.read_text(encoding="utf-8").splitlines()] == PATHS[:3]
