"""A predictions file that a killed `bbuvl predict` left unfinished.

Every writer holds a lock on its output while it runs (bbuvl/outputs.py: an flock on `.NAME.lock` beside it,
holding "PID COMMAND" and its host); an input whose lock is held is refused there (`refuse_inputs_being_written`). A lock file
that nobody holds but that names a command is a killed writer's; for `bbuvl predict`, which appends, that means
the photos after the kill have no line yet.
"""

from __future__ import annotations

from pathlib import Path

from bbuvl.outputs import writer_at


def unfinished_predictions_note(pred: Path) -> str | None:
    """A note when `pred` was left by a `bbuvl predict` killed before it predicted every photo, else None."""
    writer = writer_at(pred)
    if writer is None or writer.running or writer.command != "predict":
        return None
    return (f"{pred} is unfinished: `bbuvl predict` ({writer.who}) was stopped before it predicted every photo, so "
            "the photos it had not reached have no line; run the same `bbuvl predict` command again to finish the file "
            "(it resumes where it stopped)")
