"""A loaded model's weights in memory of its own, not in the checkpoint's files.

safetensors maps a checkpoint's files into memory, and a model loaded on the CPU computes on those mapped pages: a
checkpoint copied over in place while it is served or predicted from (`cp new/model.safetensors final/`, a
`save_pretrained` into the same folder) changed the answers without a word, halfway through a predictions file too,
and one cut shorter would kill the process (SIGBUS) at the next batch. A copy made once at load (the model's size,
seconds) makes the files free to change (docs/serving.md, "Bad input").
"""

from __future__ import annotations

import bisect
from itertools import chain
from pathlib import Path

import torch

MAPS = Path("/proc/self/maps")


def own_weights(model: torch.nn.Module) -> int:
    """Copy each CPU parameter and buffer of `model` that lies in a file mapping into memory of its own; how many.

    Where the mappings cannot be read (no /proc), every CPU tensor is copied.
    """
    spans = _file_spans()
    copied = 0
    for tensor in chain(model.parameters(), model.buffers()):
        if tensor.device.type != "cpu" or tensor.numel() == 0:
            continue
        if spans is None or _inside(tensor.data_ptr(), spans):
            tensor.data = tensor.data.clone()
            copied += 1
    return copied


def _file_spans() -> tuple[list[int], list[int]] | None:
    """The starts and ends, sorted, of this process's mappings of files; None when they cannot be read."""
    try:
        # Bytes: a path there is the file's own name, which need not be UTF-8 (a checkpoint in a folder named in GBK
        # failed to load with a UnicodeDecodeError naming no file), nor this locale's encoding.
        lines = MAPS.read_bytes().splitlines()
    except OSError:
        return None
    spans = []
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith(b"/") and fields[4] != b"0":  # a file by its path and inode
            start, end = fields[0].split(b"-")
            spans.append((int(start, 16), int(end, 16)))
    spans.sort()
    return [s for s, _ in spans], [e for _, e in spans]


def _inside(address: int, spans: tuple[list[int], list[int]]) -> bool:
    """Whether `address` lies in one of `spans`."""
    starts, ends = spans
    i = bisect.bisect_right(starts, address) - 1
    return i >= 0 and address < ends[i]
