"""What a command keeps when a signal stops it (Ctrl-C, SIGTERM, SIGHUP), as the one line `bbuvl` ends it with says
(bbuvl/entry.py).

Every command claims its outputs (bbuvl/outputs.py), and a stop releases them as any failure does: what the command had
begun is removed and what an earlier run left there is put back. So a re-run starts over, unless the command writes
what it finished as it goes and goes on from there: `predict` appends whole lines and resumes them (docs/resume.md),
`train` saves whole checkpoints that `--resume` continues from. One line for every command told a stopped
`choose-tiles` that its finished scales were kept and a re-run would go on, where it removed them with `--out` and
started again from the first (docs/resume.md, "Stopped by Ctrl-C, SIGTERM or SIGHUP").
"""

from __future__ import annotations

START_OVER = "what it had begun is removed; run it again to start over"

# The commands that keep what they finished, by name (the CLI's first word); every other one starts over.
GOES_ON = {
    "predict": "the predictions it wrote are kept; run it again, without --overwrite, to go on from there",
    "train": "its whole checkpoints are kept, a half-saved one removed; run it again with --resume to go on from the "
             "newest",
}


def stop_keeps(args: list[str]) -> str:
    """What the command `args` runs (the CLI's arguments, `sys.argv[1:]`) keeps when a signal stops it, and how to go
    on."""
    command = next((a for a in args if not a.startswith("-")), "")
    return GOES_ON.get(command, START_OVER)
