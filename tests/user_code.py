"""A user's own Python modules (GRPO rewards and what they import) written into a folder on the import path, each
write read afresh as a new process would read it."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def user_code(folder: Path, monkeypatch: pytest.MonkeyPatch, modules: tuple[str, ...]) -> Iterator[Callable[[str, str], Path]]:
    """`write(name, text)`: writes `folder / name` (text dedented) and forgets `modules`, so the next import reads it;
    `folder` (created) is on the import path until the test ends, and `modules` are forgotten then too."""
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a rewrite in the same second must not load a stale .pyc

    def write(name: str, text: str) -> Path:
        path = folder / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        for module in modules:
            sys.modules.pop(module, None)
        return path

    try:
        yield write
    finally:
        for module in modules:
            sys.modules.pop(module, None)
