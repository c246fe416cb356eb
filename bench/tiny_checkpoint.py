"""A real checkpoint for benchmarks that need one: a tiny model trained one step on 8 synthetic photos."""

from __future__ import annotations

from pathlib import Path

from bbuvl.config import load_config
from bbuvl.data.schema import read_records, resolve_image
from bbuvl.synthetic.dataset import synthesize
from bbuvl.tiny.model import build_tiny_model
from bbuvl.train.trainer import train


def tiny_checkpoint(tmp: Path) -> tuple[Path, list[Path]]:
    """A tiny one-step checkpoint with a head under `tmp`, and the synthetic photos it was trained on."""
    synthesize(tmp / "data", 8, 2, seed=5, size=(448, 336), num_teachers=2)
    build_tiny_model(tmp / "model")
    cfg = load_config(None, [
        f"model.path={tmp / 'model'}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        f"data.train={tmp / 'data/train.jsonl'}", "data.val=null", f"data.teachers={tmp / 'data/teachers.jsonl'}",
        f"training.output_dir={tmp / 'run'}", "training.max_steps=1", "training.per_device_batch_size=2",
        "training.bf16=false", "training.gradient_checkpointing=false", "training.use_cpu=true",
        "inference.max_new_tokens=64",
    ])
    ckpt = Path(train(cfg, progress=False)["final"])
    return ckpt, [resolve_image(tmp / "data/train.jsonl", r.image) for r in read_records(tmp / "data/train.jsonl")]
