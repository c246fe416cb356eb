"""Paths as people type them: `~` and `$VAR` mean what a shell would make of them, wherever a path is given.

A shell expands `~/run` and `$SCRATCH/run` only where it sees them as words of their own: not in
`--out=~/run`, not in `training.output_dir=~/run`, never inside a YAML config. Every path a flag or the config
takes goes through `expand_path`, so the same text names the same folder everywhere (before this, checkpoints
went to `$HOME/run` and the final model to a literal `./~/run`). A variable that is not set, or a `~user` that is
no user, is refused rather than kept as literal text: a folder named `$SCRATCH` is never what was meant.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")


def expand_path(text: str) -> str:
    """`text` with a leading `~` / `~user` and every `$VAR` / `${VAR}` expanded; ValueError naming an unset one."""
    for match in _VARIABLE.finditer(text):
        name = match.group(1).strip("{}")
        if not re.fullmatch(r"\w+", name):
            raise ValueError(f"{text}: '{match.group(0)}' is not an environment variable name")
        if name not in os.environ:
            raise ValueError(f"{text}: the environment variable ${name} is not set")
    expanded = os.path.expandvars(text)
    if expanded.startswith("~"):
        home = os.path.expanduser(expanded)
        if home.startswith("~"):
            user = expanded[1:].split("/", 1)[0]
            raise ValueError(f"{text}: '~{user}' names no user's home folder here")
        expanded = home
    return expanded


def real_path(path: str | os.PathLike[str]) -> Path:
    """`path` made absolute with its links followed, as `Path.resolve()` does, except that a link loop stays as it is:
    resolve() raised RuntimeError on one, a traceback where the command should name the path where it reads or writes
    it."""
    return Path(os.path.realpath(path))


def looks_local(text: str) -> bool:
    """True when `text` can only be a local path, never a hub id (`name` or `owner/name`): absolute, starting
    with `.` or `~`, with more than one `/`, or with a backslash."""
    return (os.path.isabs(text) or text.startswith((".", "~")) or text.count("/") > 1 or "\\" in text
            or text.endswith("/"))


def check_model_source(text: str, what: str = "model") -> None:
    """Raise ValueError when `text` can only be a local path but names no folder: it is never passed on to the
    hub, whose error would call a mistyped folder a bad hub id."""
    if os.path.isdir(text):
        return
    if os.path.exists(text):
        raise ValueError(f"{text}: is a file; the {what} is a folder (or a hub id)")
    if looks_local(text):
        raise ValueError(f"{text}: no such folder (the {what}; a local path, so the hub was not asked)")
