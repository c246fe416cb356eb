"""An --out name near or past the file system's limit: past it, predict failed on an OSError traceback ('File name too
long'); a few bytes short of it, the name was taken, the model loaded, and the run failed writing the manifest beside
it (OUT.predict.json, through a longer temporary name), with nothing predicted. Both are refused before anything
loads, naming the longest name that works, and that name works: predicted and resumed."""

from __future__ import annotations

import os
import re

import pytest

from tests.reliability.test_a_resume_never_mixes_two_runs import invoke, refused

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_name_without_room_for_the_manifest_is_refused_naming_the_longest_that_works(trained_checkpoint, small_dataset,
                                                                                        tmp_path):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    argv = ["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "--mode", "head", "--device", "cpu"]
    longest = None
    for length in (limit + 45, limit - 10):  # past the limit; short of it, but the manifest's temporary name is not
        out = tmp_path / ("p" * (length - len(".jsonl")) + ".jsonl")
        text = refused(invoke([*argv, "-o", out]), f"a name of {length} bytes, and predict writes its manifest beside it")
        assert "Loading weights" not in text and "Traceback" not in text
        longest = int(re.search(r"choose a name of at most (\d+) bytes", text).group(1))
    assert not [p for p in tmp_path.iterdir()]
    out = tmp_path / ("p" * (longest - len(".jsonl")) + ".jsonl")
    first = invoke([*argv, "-o", out])
    assert first.exit_code == 0, first.output
    again = invoke([*argv, "-o", out])
    assert again.exit_code == 0 and "2 already in" in " ".join(again.output.split()), again.output
