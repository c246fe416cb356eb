"""What a plain model folder (a `bbuvl model export`, a base model) must hold whole before it is loaded.

A folder a copy or an export cut short is named by the file at fault: transformers' own errors speak of a
safetensors header ("incomplete metadata"), a video processor, or a config and tokenizer that disagree.
"""

from __future__ import annotations

from pathlib import Path

from bbuvl.model.checkpoint import start_folder_problem


def stock_folder_problem(directory: str | Path) -> str | None:
    """Why a plain model folder cannot be loaded as it is (None when it can): a file transformers loads it from
    missing, or a weights file shorter or longer than its header says (`start_folder_problem`)."""
    directory = Path(directory)
    if problem := start_folder_problem(directory):
        return f"{directory}: {problem}"
    return None
