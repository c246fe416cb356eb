"""The names a server gives the folders it serves (the checkpoint, the few-shot support set) in its answers and log."""

from __future__ import annotations

import os
from pathlib import Path

from bbuvl.paths import expand_path


def served_name(folder: str | Path) -> str:
    """`folder`'s own name, as typed (a link keeps its name), where `-c .` from inside it named '' and `-c final/..`
    named '..'."""
    return Path(os.path.abspath(expand_path(str(folder)))).name
