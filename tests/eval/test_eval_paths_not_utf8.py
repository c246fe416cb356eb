"""eval of a predictions file in a folder named in GBK bytes (an archive from a Chinese Windows, unpacked here): its
METRICS.json records the file's path as JSON escapes, which read back as that path, where writing it ended in a
UnicodeEncodeError traceback after the whole evaluation."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from bbuvl.cli import app
from bbuvl.eval.compare import PREDICTIONS_KEY, SETTINGS_KEY
from bbuvl.paths import real_path
from tests.locales import gbk_folder


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_eval_of_predictions_in_a_gbk_folder_records_their_path_as_it_is(eval_files, tmp_path):
    pred = shutil.copy(eval_files.pred, gbk_folder(tmp_path) / "p.jsonl")  # its photos named by their full paths
    out = tmp_path / "m.json"
    for extra in ([], ["--baseline", out]):  # and read back as a baseline
        result = CliRunner().invoke(app, ["eval", "--pred", str(pred), "--gt", str(eval_files.gt), "--out",
                                          str(out if not extra else tmp_path / "m2.json"), *extra])
        assert result.exit_code == 0 and result.exception is None, (result.output, result.exception)
    recorded = json.loads(out.read_text(encoding="utf-8"))[SETTINGS_KEY][PREDICTIONS_KEY]["file"]
    assert recorded == str(real_path(pred)) and "\\udcca" in out.read_text(encoding="utf-8")
