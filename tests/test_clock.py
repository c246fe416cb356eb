"""bbuvl/clock.py: a time written for people names its UTC offset, so one moment reads as one moment in every zone;
`bbuvl serve`'s log lines carry it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest

from bbuvl.clock import local_time

# POSIX zone rules, no tz database needed: the offset is the sign's opposite (XYZ-8 is 8 hours east of UTC)
EAST, WEST = "XYZ-8", "ABC+5"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"


@pytest.fixture
def zone(monkeypatch):
    """Set this process's time zone (undone after the test)."""
    def set_zone(rule: str) -> None:
        monkeypatch.setenv("TZ", rule)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def test_one_moment_written_in_two_zones_names_its_offset_and_reads_back_as_the_same_moment(zone):
    moment = 1_796_081_700.25
    zone(EAST)
    east = local_time(moment)
    zone(WEST)
    west = local_time(moment)
    assert re.fullmatch(STAMP + r"\+08:00", east) and re.fullmatch(STAMP + r"-05:00", west), (east, west)
    assert east != west and datetime.fromisoformat(east) == datetime.fromisoformat(west)
    assert datetime.fromisoformat(east).timestamp() == int(moment)  # to the second
    assert local_time(moment, "milliseconds").endswith(".250-05:00")
    assert abs(datetime.fromisoformat(local_time()) - datetime.now().astimezone()) < timedelta(seconds=5)


SERVE_LOG = """
import logging
from bbuvl.cli.serve import start_logging
start_logging("info")
logging.getLogger("bbuvl.serve").info("serving")
"""


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_serves_log_lines_start_with_the_local_time_and_its_offset():
    # Before: '2026-12-01 07:44:58,863 INFO bbuvl.serve: ...', the server's wall clock with no zone
    done = subprocess.run([sys.executable, "-c", SERVE_LOG], env={**os.environ, "TZ": EAST}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(STAMP + r"\.\d{3}\+08:00 INFO bbuvl\.serve: serving\n", done.stderr), done.stderr
