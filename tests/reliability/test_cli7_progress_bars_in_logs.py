"""`bbuvl` run from cron, CI or Airflow writes its stderr to a log: Hugging Face's bars (loading weights, writing
model shards) redrew there with carriage returns, one long line per bar in every log of every predict and train."""

import os
import subprocess
import sys

import pytest

CHILD = """
import sys, bbuvl.entry
sys.argv = ["bbuvl", "--version"]
try:
    bbuvl.entry.main()
except SystemExit:
    pass
from huggingface_hub.utils import are_progress_bars_disabled
print(are_progress_bars_disabled())
"""


def run_child(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"} | env
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, env=environ)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_hugging_face_progress_bars_are_off_when_stderr_is_a_log_not_a_terminal():
    assert run_child() == "True"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_callers_own_progress_bar_setting_wins():
    assert run_child(HF_HUB_DISABLE_PROGRESS_BARS="0") == "False"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_progress_bars_are_off_in_a_launchers_rank_logs_too():
    # torchrun and accelerate run `python -m bbuvl.cli`, which skips bbuvl's entry point: each rank's log had the bars
    child = CHILD.replace("import sys, bbuvl.entry", "import runpy, sys").replace(
        "bbuvl.entry.main()", "runpy.run_module('bbuvl.cli', run_name='__main__')")
    environ = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120, env=environ)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "True"
