"""A cron job or a container runs with LC_ALL=C; with Python's UTF-8 mode off there (PYTHONUTF8=0), stdout is ASCII
with surrogateescape, and the first Chinese label `data stats` printed was a UnicodeEncodeError traceback."""

import os
import subprocess
import sys

import pytest


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_c_locale_without_utf8_mode_gets_the_labels_escaped_not_a_traceback(small_dataset):
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "COLUMNS": "200"}
    env.pop("PYTHONIOENCODING", None)
    done = subprocess.run([sys.executable, "-m", "bbuvl.cli", "data", "stats", str(small_dataset)], env=env,
                          capture_output=True, timeout=120)
    out = done.stdout.decode("ascii") + done.stderr.decode("ascii", errors="replace")
    assert done.returncode == 0 and "Traceback" not in out, out
    assert "\\u7ebf\\u7f06" in out  # 线缆, spelled
