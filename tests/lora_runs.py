"""The overrides of a one-step LoRA run on a tiny model, as the LoRA tests train it."""

from __future__ import annotations

from pathlib import Path


def one_step_lora(model: Path, dataset: Path, output_dir: Path, save_steps: int) -> list[str]:
    """Config overrides for one LoRA step (r 4) on `model` over `dataset`'s train.jsonl, saved every `save_steps`."""
    return [
        f"model.path={model}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        "model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", f"data.train={dataset / 'train.jsonl'}",
        "data.val=null", "data.teachers=null", "data.num_workers=0", f"training.output_dir={output_dir}",
        "training.per_device_batch_size=2", "training.gradient_accumulation_steps=1", "training.max_steps=1",
        f"training.save_steps={save_steps}", "training.bf16=false", "training.gradient_checkpointing=false",
        "training.use_cpu=true", "detection.num_queries=8", "detection.num_heads=4", "detection.caption_layers=1",
        "detection.decoder_layers=1",
    ]
