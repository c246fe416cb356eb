"""Inputs another bbuvl command is writing right now, or that a killed `bbuvl predict` left unfinished.

Every writer holds a lock on its output while it runs (bbuvl/outputs.py: an flock on `.NAME.lock` beside it,
holding "PID COMMAND"). A reader that finds the lock held would read a predictions file still growing line by
line, or a file about to be replaced: its numbers would describe a moment of another run, so it refuses, naming
the writer. A lock file that nobody holds but that names a command is a killed writer's; for `bbuvl predict`,
which appends, that means the photos after the kill have no line yet.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from bbuvl.outputs import lock_path


@dataclass(frozen=True)
class Writer:
    """The command whose lock file lies beside an input: its pid, its name, and whether it is running now."""

    pid: str
    command: str
    running: bool


def writer_at(path: Path) -> Writer | None:
    """The writer named by `path`'s lock file, None without one (or an empty one: a writer that ended)."""
    try:
        fh = lock_path(path).open("r", encoding="utf-8", errors="replace")
    except (OSError, ValueError):  # no lock file, or no name to keep one beside: nobody writes it
        return None
    with fh:
        try:
            # Shared and at once: a running writer holds it exclusive; another reader's probe does not block ours.
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            running = False
        except BlockingIOError:
            running = True
        except OSError:
            return None
        pid, _, command = fh.read().strip().partition(" ")
    if (not running and not command) or pid == str(os.getpid()):
        return None  # a writer that ended, or this process's own claim (a library caller that wrote it first)
    return Writer(pid or "unknown", command or "command", running)


def refuse_inputs_being_written(inputs: Mapping[str, Path | None]) -> None:
    """ValueError naming the first input another process is writing now, and what to do."""
    for what, path in inputs.items():
        if path is None or (writer := writer_at(path)) is None or not writer.running:
            continue
        raise ValueError(f"{path} ({what}): `bbuvl {writer.command}` (pid {writer.pid}) is still writing it, so it is "
                         "not whole yet; wait for that command to finish, then run this one again")


def unfinished_predictions_note(pred: Path) -> str | None:
    """A note when `pred` was left by a `bbuvl predict` killed before it predicted every photo, else None."""
    writer = writer_at(pred)
    if writer is None or writer.running or writer.command != "predict":
        return None
    return (f"{pred} is unfinished: `bbuvl predict` (pid {writer.pid}) was stopped before it predicted every photo, so "
            "the photos it had not reached have no line; run the same `bbuvl predict` command again to finish the file "
            "(it resumes where it stopped)")
