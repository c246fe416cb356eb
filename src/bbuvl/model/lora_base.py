"""The base model a LoRA checkpoint's adapters were trained on, by a cheap fingerprint of its content.

A LoRA checkpoint holds adapters only and loads its base weights from `model.path`. A base folder replaced in place
(another download, another fine-tune of the same architecture under the same name) would have the adapters applied
to weights they were never trained on, with no error. Hashing a multi-GB base at every load takes tens of seconds
(docs/resume.md), so `bbuvl train` records a fingerprint instead (`lora_base.json`): SHA-256 of config.json and of
every small file naming the weights (a shard index), and, per weights file, its size and SHA-256 of its first
64 KiB (the safetensors header: every tensor's name, dtype, shape and offset) and of 256 blocks of 4 KiB spread
evenly over the rest. A fine-tune that changed 5% of the bytes escapes 256 blocks with odds of 0.95^256, below
1e-5. Copies of the same base match (no stat is recorded), so a base moved or copied elsewhere still loads.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from bbuvl.atomic import write_text_atomic

BASE_FILE = "lora_base.json"
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")
HEAD_BYTES = 64 * 1024
BLOCKS, BLOCK_BYTES = 256, 4096
SMALL_BYTES = 1024 * 1024  # config.json, a shard index: hashed whole


def base_fingerprint(base: str | Path) -> dict[str, Any]:
    """The fingerprint of a base model folder: {file name: digest} over config.json, its weights and shard indexes."""
    base = Path(base)
    found = {}
    for path in sorted(p for p in base.iterdir() if p.is_file()):
        if path.name == "config.json" or path.name.endswith(".index.json"):
            found[path.name] = _sha256(path.read_bytes())
        elif path.suffix in WEIGHTS:
            found[path.name] = _sampled(path)
    return found


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sampled(path: Path) -> str:
    """`size:sha256` of a weights file: whole when small, else its head and BLOCKS blocks spread over the rest."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        if size <= SMALL_BYTES:
            digest.update(fh.read())
        else:
            digest.update(fh.read(HEAD_BYTES))
            step = (size - HEAD_BYTES - BLOCK_BYTES) / (BLOCKS - 1)
            for k in range(BLOCKS):
                fh.seek(HEAD_BYTES + int(k * step))
                digest.update(fh.read(BLOCK_BYTES))
    return f"{size}:{digest.hexdigest()}"


def record_base(checkpoint: str | Path, base: str | Path) -> None:
    """Write the fingerprint of the LoRA base folder `base` into `checkpoint` (`lora_base.json`)."""
    record = {"base": str(base), "fingerprint": base_fingerprint(base)}
    write_text_atomic(Path(checkpoint) / BASE_FILE, json.dumps(record, ensure_ascii=False, indent=1) + "\n")


def base_changes(checkpoint: str | Path, base: str | Path) -> list[str] | None:
    """How the folder `base` differs from the base `checkpoint` was trained on (file by file; empty when it is the
    same); None when the checkpoint recorded none (saved before fingerprints, or a base from the hub)."""
    path = Path(checkpoint) / BASE_FILE
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return [f"{path} cannot be read ({e})"]
    old = recorded.get("fingerprint") if isinstance(recorded, dict) else None
    if not isinstance(old, dict):
        return [f"{path} holds no fingerprint"]
    new = base_fingerprint(base)
    changes = [f"{name} {'removed' if name not in new else 'added' if name not in old else 'differs'}"
               for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]
    return changes
