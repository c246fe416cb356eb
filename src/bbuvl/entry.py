"""The `bbuvl` console script: the CLI, where Ctrl-C during start-up (its imports take seconds) ends quietly."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the CLI; an interrupt while it is still importing exits 130 with one line, not the imports' traceback."""
    try:
        from bbuvl.cli import app
    except KeyboardInterrupt:
        print("interrupted before the command started; nothing was written", file=sys.stderr)
        raise SystemExit(130) from None
    app()
