"""Times written for people: local time with its UTC offset, in ISO 8601 (`2026-12-01T07:44:58+08:00`), one form
everywhere a time is shown (an eval report's date, a reader's start in a refusal, `bbuvl serve`'s log lines).

Without its offset a time is its writer's wall clock: a reader registered on a machine in Shanghai and named by a
writer in New York (a home shared over NFS), or two shells with other `TZ`, gave one moment hours apart.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime


def local_time(moment: float | None = None, timespec: str = "seconds") -> str:
    """`moment` (seconds since the epoch; now when None) as local time with its UTC offset, ISO 8601, to `timespec`
    (`datetime.isoformat`'s: "seconds", "milliseconds")."""
    return datetime.fromtimestamp(time.time() if moment is None else moment).astimezone().isoformat(timespec=timespec)


class LocalTimeFormatter(logging.Formatter):
    """A logging formatter whose `%(asctime)s` is `local_time` to the millisecond (logging's own has no offset)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        """The record's time as `local_time` gives it; `datefmt` is not used (one form everywhere)."""
        return local_time(record.created, "milliseconds")
