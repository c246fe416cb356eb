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


def edited_predictions_note(pred: Path) -> str | None:
    """A note when lines of `pred` are not the ones `bbuvl predict` left for their photos, as its manifest records them
    (infer/output.py `record_lines`): edited or replaced since, they are judged by a manifest that says nothing of what
    made them. None when every line is, or nothing is recorded."""
    from bbuvl.infer.output import foreign_lines

    try:
        found = foreign_lines(Path(pred))
    except OSError:  # unread here: its reader names it
        return None
    if not found:
        return None
    (no, image), more = found[0], len(found) - 1
    others = f" and {more} more line{'s' if more > 1 else ''}" if more else ""
    return (f"{pred}:{no}: image {image}{others}: not the line `bbuvl predict` left for it (its manifest records "
            "another: the file was edited or replaced since), yet judged by that manifest's checkpoint and settings; "
            "run the same `bbuvl predict` command again to predict such lines again")

