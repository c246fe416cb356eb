"""`bbuvl predict` whose predictions file, or the manifest beside it, has a path Windows would not open (260 characters
with the closing NUL) says so once, naming the longest, as the data writers do: copied there, eval and every tool that
does not enable long paths find no such file."""

from __future__ import annotations

import pytest

from bbuvl.data.names import WINDOWS_MAX_PATH, windows_length
from bbuvl.infer.output import manifest_path
from tests.reliability.test_a_resume_never_mixes_two_runs import invoke

pytestmark = pytest.mark.usefixtures("one_thread")
WARNING = "Windows opens"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_predict_warns_once_naming_its_longest_written_path(trained_checkpoint, small_dataset, tmp_path):
    argv = ["predict", "-c", trained_checkpoint, "-i", small_dataset / "val.jsonl", "--mode", "head", "--device", "cpu"]
    deep = tmp_path / ("机房" * 40) / ("x" * 100)
    deep.mkdir(parents=True)
    out = deep / "predictions.jsonl"
    # the predictions file may still fit; the manifest beside it, 13 characters longer, does not
    assert windows_length(manifest_path(out)) >= WINDOWS_MAX_PATH
    r = invoke([*argv, "-o", out])
    said = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    longest = f"'{manifest_path(out)}' has {windows_length(manifest_path(out))} characters"
    assert said.count(WARNING) == 1 and longest in said and "shorter name" in said, said
    near = tmp_path / "near" / "predictions.jsonl"
    near.parent.mkdir()
    r = invoke([*argv, "-o", near])
    assert r.exit_code == 0 and WARNING not in r.output, r.output
