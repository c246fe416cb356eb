"""predict's write of a chunk that fails part-way says how many photos' lines it kept whole: under a file-size limit a
chunk of four lines landed two lines and part of a third before the write failed, and the error said "the 0 images
written before are kept". The re-run drops the line cut short and predicts each photo left once."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from bbuvl.infer.batch import PredictJob, run_predictions
from tests.reliability.faults import fake_lines, file_size_limit

PATHS = [f"/photos/img{i}.jpg" for i in range(8)]


def predict(chunk: list[str]) -> list[dict]:
    return fake_lines(chunk, pad=400)


def test_a_chunk_written_in_part_counts_the_lines_it_kept_whole_and_the_rerun_predicts_the_rest_once(tmp_path):
    out = tmp_path / "p.jsonl"
    job = PredictJob(list(PATHS), out, "head", 4, source="/photos", checkpoint="/ckpt")
    line = len(json.dumps(predict(PATHS[:1])[0], ensure_ascii=False)) + 1
    with pytest.raises(OSError) as raised, file_size_limit(int(2.5 * line)):  # two lines and half of the third
        run_predictions(job, predict)
    assert raised.value.errno == errno.EFBIG
    assert f"{out}: writing predictions failed (File too large); the 2 images written whole before are kept" \
        in str(raised.value)
    assert out.read_bytes().count(b"\n") == 2
    run_predictions(job, predict)
    images = [json.loads(text)["image"] for text in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(images) == sorted(PATHS) and len(images) == len(PATHS)
