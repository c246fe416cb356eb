"""The command line of a training run as one process or as several DDP processes over gloo (tests that compare them)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ZERO2 = REPO / "configs" / "deepspeed" / "zero2.json"
# `bbuvl` for DeepSpeed on CPU-only machines (the file says why accelerate needs it there).
DEEPSPEED_CPU_CLI = (str(REPO / "tests" / "train" / "deepspeed_cpu_launch.py"),)


def launch_command(processes: int, port: int, cli: tuple[str, ...] = ("-m", "bbuvl.cli")) -> list[str]:
    """`python CLI` for one process; `torch.distributed.run` with `processes` of it on `port` otherwise."""
    if processes == 1:
        return [sys.executable, *cli]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-port", str(port),
            *cli]


def free_port() -> int:
    """A port no process listens on now (other test runs on the machine launch theirs too)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grpo_overrides(model: Path, train: Path, val: Path | None, out: Path, steps: int) -> list[str]:
    """The overrides of a GRPO run of `steps` on the tiny model as the two-process tests launch it: one photo a step per
    process, two answers each of 16 tokens at most, on the CPU in float32."""
    return [f"model.path={model}", "model.dtype=float32", "training.method=grpo", "model.min_pixels=12544",
            "model.max_pixels=50176", f"data.train={train}", f"data.val={val if val is not None else 'null'}",
            "data.teachers=null", "data.num_workers=0", f"training.output_dir={out}", "training.per_device_batch_size=1",
            f"training.max_steps={steps}", "training.logging_steps=1", "training.save_steps=100", "training.bf16=false",
            "training.gradient_checkpointing=false", "training.use_cpu=true", "training.warmup_ratio=0",
            "grpo.group_size=2", "grpo.max_new_tokens=16"]
