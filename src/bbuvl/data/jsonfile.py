"""Reading one small JSON file (labels, metrics, a contract) with errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: str | Path, what: str = "file") -> Any:
    """The parsed content of `path`; FileNotFoundError or ValueError naming the file (and line) otherwise."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
