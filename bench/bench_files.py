"""The files a bench writes where its user says (`--out`, `--json`): only its own, and whole.

A bench's report is replaced, or its rows appended to, only where the file there is one this bench wrote (or there is
none): a mistyped `--json configs/base.yaml` or `--out data/train.jsonl` is refused before any work, instead of
replacing a config or appending a row to a dataset (a ValueError naming the file, which the bench prints as its one
line). Reports are written atomically (bbuvl/atomic.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Iterable

from bbuvl.atomic import write_text_atomic


def refuse_foreign(path: Path, ours: Callable[[Any], bool], what: str) -> None:
    """Refuse (ValueError naming `path`) a file there that is not a JSON report `ours` recognises as `what`."""
    if not path.exists():
        return
    if not path.is_file():
        raise ValueError(f"{path}: not a file; give a new file for the {what}")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        report = None
    if report is None or not ours(report):
        raise ValueError(f"{path}: not a {what} this bench wrote; it is left as it is (give a new file, or remove it)")


def refuse_foreign_rows(path: Path, ours: Callable[[dict], bool], what: str) -> list[dict]:
    """The rows of a JSON-lines file this bench appends to (none when it does not exist); a ValueError naming the file
    and line when a line is not one of `what` (`ours`), so a wrong `--out` is never appended to."""
    if not path.exists():
        return []
    if not path.is_file():
        raise ValueError(f"{path}: not a file; give a new file for the {what}")
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not readable as {what} ({e}); it is left as it is (give a new file)") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not ours(row):
            raise ValueError(f"{path}:{number}: not a line of {what} this bench wrote; the file is left as it is "
                             "(give a new file, or remove it)")
        rows.append(row)
    return rows


def write_report(path: Path, report: Any) -> None:
    """`report` as indented JSON at `path`, written whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(report, indent=1, ensure_ascii=False) + "\n")


def check_inputs(checkpoints: Iterable[Path | None] = (), files: Iterable[Path | None] = ()) -> None:
    """Refuse, before any photo is rendered or model loaded, a checkpoint folder bbuvl cannot read (its config only,
    not its weights) or an input file that is not there: an OSError or ValueError naming it."""
    from bbuvl.model.checkpoint import read_model_folder

    for checkpoint in checkpoints:
        if checkpoint is not None:
            read_model_folder(checkpoint)
    for file in files:
        if file is not None and not file.is_file():
            raise FileNotFoundError(f"{file}: no such file")


def check_before_work(ap: argparse.ArgumentParser, rows: Path | None, keys: set[str], what: str,
                      checkpoints: Iterable[Path | None] = (), files: Iterable[Path | None] = ()) -> None:
    """A bench's `--json` rows file (one whose rows hold `keys`, or none yet) and its inputs (`check_inputs`), checked
    before any work; each problem is the argument parser's one-line error."""
    if rows is not None:
        try:
            refuse_foreign_rows(rows, lambda row: keys <= set(row), what)
        except ValueError as e:
            ap.error(f"--json: {e}")
    try:
        check_inputs(checkpoints, files)
    except (OSError, ValueError) as e:
        ap.error(str(e))
