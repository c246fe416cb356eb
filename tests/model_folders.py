"""Model folders taken apart as a damaged copy would be, for the tests that check each is refused naming what is gone."""

from __future__ import annotations

import json
from pathlib import Path

IMAGE_PROCESSOR_GONE = "preprocessor_config.json (or an image_processor in processor_config.json)"


def remove_file(folder: Path, name: str) -> str:
    """Remove `name` from `folder`; returns what a refusal says is missing. The image processor's settings are in
    preprocessor_config.json and nested in processor_config.json too: removing the first removes both."""
    (folder / name).unlink()
    if name != "preprocessor_config.json":
        return name
    nested = folder / "processor_config.json"
    if nested.is_file():
        saved = json.loads(nested.read_text(encoding="utf-8"))
        saved.pop("image_processor", None)
        nested.write_text(json.dumps(saved), encoding="utf-8")
    return IMAGE_PROCESSOR_GONE
