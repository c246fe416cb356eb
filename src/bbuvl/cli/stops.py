"""What a command keeps when a signal stops it (Ctrl-C, SIGTERM, SIGHUP), as the one line `bbuvl` ends it with says
(bbuvl/entry.py).

Every command claims its outputs (bbuvl/outputs.py), and a stop releases them as any failure does: what the command had
begun is removed and what an earlier run left there is put back. So a re-run starts over, unless the command writes
what it finished as it goes and goes on from there: `predict` appends whole lines and resumes them (docs/resume.md),
`train` saves whole checkpoints that `--resume` continues from. One line for every command told a stopped
`choose-tiles` that its finished scales were kept and a re-run would go on, where it removed them with `--out` and
started again from the first (docs/resume.md, "Stopped by Ctrl-C, SIGTERM or SIGHUP").

What is true depends on how far the command got, not on its name alone: a `train` stopped before its first whole
checkpoint was told to go on with `--resume`, which found nothing to resume, and a `predict --overwrite` stopped before
it started `--out` over was told to run again without `--overwrite`, which refused `--out` as another run's. So each
command says what it keeps as that changes (`keeps_now`), and a command that says nothing starts over.
"""

from __future__ import annotations

from collections.abc import Callable

START_OVER = "what it had begun is removed; run it again to start over"

# What the running command keeps if a signal stops it now: the words, or a function saying them once the stop has
# released the outputs (what a re-run finds on disk then). One command a process runs at a time (cli/common.py resets
# it before each).
_NOW: list[str | Callable[[], str]] = [START_OVER]


def keeps_now(said: str | Callable[[], str]) -> None:
    """From now on, what the running command keeps if a signal stops it and how to go on: `said`, or what `said()`
    returns once the stop has released the command's outputs."""
    _NOW[0] = said


def stop_keeps() -> str:
    """What the running command keeps, now that a signal stopped it, and how to go on: what it last said
    (`keeps_now`), START_OVER where it said nothing; '' where its account could not look at the disk."""
    said = _NOW[0]
    if isinstance(said, str):
        return said
    try:
        return said()
    except OSError:  # a disk that cannot be read now: the line says which signal stopped it, and no wrong advice
        return ""
