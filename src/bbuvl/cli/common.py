"""Shared CLI plumbing: one console, and turning expected errors into one red line and exit code 2."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> None:
    """Print an error the user can act on and exit."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Report the listed exception kinds (default ValueError, OSError) as clean errors, not tracebacks."""
    try:
        yield
    except (kinds or (ValueError, OSError)) as e:  # type: ignore[misc]
        fail(str(e))


def parse_size(text: str) -> tuple[int, int]:
    """`"640x480"` -> `(640, 480)`."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        fail(f"size must look like WIDTHxHEIGHT (e.g. 640x480), got '{text}'")
        raise
    return w, h


def stdout_is_tty() -> bool:
    """True when progress bars should animate."""
    return sys.stdout.isatty()
