"""Reading one small JSON file (labels, metrics, a contract, a model's config) with errors that name the file and the line.

Every whole-file JSON read goes through `read_json`; JSONL lines, HTTP bodies and model answers are parsed where
they are read, each with its own error (the line number, the status code, the parse failure).
"""

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
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); is this a JSON file?") from None
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deep to read: thousands of [ or {{)") from None
