"""GRPO as two processes on CPU (gloo), plain DDP or DeepSpeed ZeRO-2 with accumulation, trains like one process with
the whole batch, and prints its summary once."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from bbuvl.config import dump_config, load_config
from bbuvl.data.coords import CoordinateContract

from tests.launch import DEEPSPEED_CPU_CLI, ZERO2, launch_command

pytestmark = pytest.mark.slow

LOGGED = ("loss", "grad_norm", "reward", "reward_detection", "reward_label", "answer_length", "clip_fraction",
          "zero_spread_groups")


def _run(trained_checkpoint: Path, small_dataset: Path, out: Path, processes: int, accumulation: int = 1,
         deepspeed: bool = False) -> tuple[list[dict], str]:
    """GRPO from the session's checkpoint, 4 photos a step (processes x accumulation x batch): its logged steps and
    output. With `deepspeed`, ZeRO-2 on DeepSpeed's CPU accelerator (tests/train/deepspeed_cpu_launch.py)."""
    # The written config names every key, the frame's too: GRPO refuses a frame other than its checkpoint's.
    frame = CoordinateContract.load(trained_checkpoint)
    cfg = load_config(None, [
        f"model.path={trained_checkpoint}", "model.dtype=float32", "training.method=grpo",
        *(f"model.{key}={getattr(frame, key)}" for key in ("min_pixels", "max_pixels", "max_vision_tokens")),
        f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", "data.teachers=null", "data.num_workers=0",
        f"training.output_dir={out}", f"training.per_device_batch_size={4 // (processes * accumulation)}",
        f"training.gradient_accumulation_steps={accumulation}", "training.max_steps=2", "training.logging_steps=1",
        "training.save_steps=100", "training.bf16=false", "training.gradient_checkpointing=false",
        # DeepSpeed runs on its CPU accelerator, which accelerate only takes when not told to use the CPU.
        f"training.use_cpu={str(not deepspeed).lower()}", *([f"training.deepspeed={ZERO2}"] if deepspeed else []),
        "training.warmup_ratio=0", "training.lr.llm=1e-3", "training.lr.vision=1e-3", "training.lr.merger=1e-3",
        "training.lr.adapter=1e-3", "grpo.group_size=3", "grpo.max_new_tokens=48",
    ])
    config = out.parent / f"{out.name}.yaml"
    config.write_text(dump_config(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({} if deepspeed else {"ACCELERATE_USE_CPU": "true"})}
    cli = DEEPSPEED_CPU_CLI if deepspeed else ("-m", "bbuvl.cli")
    done = subprocess.run(launch_command(processes, 29541 + deepspeed, cli) + ["train", str(config)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    logged = json.loads((out / "history.json").read_text())
    return [h for h in logged if "reward" in h], done.stdout


@pytest.fixture(scope="module")
def one_process(trained_checkpoint, small_dataset, tmp_path_factory) -> list[dict]:
    """The logged steps of one process with all 4 photos a step (what every distributed run must reproduce)."""
    return _run(trained_checkpoint, small_dataset, tmp_path_factory.mktemp("grpo") / "one", 1)[0]


def _assert_same_steps(one: list[dict], other: list[dict], grad_norm_rel: float = 1e-4) -> None:
    assert [h["step"] for h in one] == [h["step"] for h in other] == [1, 2]
    for a, b in zip(one, other):
        for key in LOGGED:
            rel = grad_norm_rel if key == "grad_norm" else 1e-4
            assert b[key] == pytest.approx(a[key], rel=rel, abs=1e-6), (key, a, b)
    assert any(h["reward"] != one[0]["reward"] or h["loss"] != 0 for h in one)  # rewards moved: something compared


def test_two_processes_roll_out_score_and_step_like_one_with_the_whole_batch(one_process, trained_checkpoint,
                                                                             small_dataset, tmp_path):
    two, printed = _run(trained_checkpoint, small_dataset, tmp_path / "two", 2)
    _assert_same_steps(one_process, two)
    assert (tmp_path / "two" / "final" / "bbuvl.yaml").exists()
    assert printed.count("checkpoint") == 1  # the summary comes from the first process only


def test_deepspeed_zero2_with_accumulation_updates_the_weights_exactly_as_ddp_does(one_process, trained_checkpoint,
                                                                                   small_dataset, tmp_path):
    pytest.importorskip("deepspeed", reason="the [deepspeed] extra is not installed")
    # 2 ranks x 2 micro-batches x 1 photo. DeepSpeed divides by the accumulation steps itself unless the trainer
    # tells it not to, and averages over ranks: either done twice or not at all would change the weights.
    ddp, _ = _run(trained_checkpoint, small_dataset, tmp_path / "ddp", 2, accumulation=2)
    zero2, _ = _run(trained_checkpoint, small_dataset, tmp_path / "zero2", 2, accumulation=2, deepspeed=True)
    # DeepSpeed computes the gradient norm it reports itself: it read 4e-5 to 1.04e-4 above torch's on every step and
    # family measured, while the weights came out as DDP's to float rounding (docs/grpo.md, "Scale-out").
    _assert_same_steps(one_process, zero2, grad_norm_rel=3e-4)
    _assert_same_steps(ddp, zero2, grad_norm_rel=3e-4)
    start = load_file(trained_checkpoint / "model.safetensors")
    a, b = (load_file(tmp_path / name / "final" / "model.safetensors") for name in ("ddp", "zero2"))
    assert sorted(a) == sorted(b)
    # Adam's steps barely depend on the gradient's scale (the norms above check that): the weights check its
    # direction. Measured apart: at most 6e-4 of the largest step.
    step = max(float((a[k] - start[k]).abs().max()) for k in a)
    assert step > 0, "GRPO's two steps moved no weight: nothing was compared"
    for k in a:
        assert float((a[k] - b[k]).abs().max()) <= 0.01 * step, f"{k}: ZeRO-2's weights differ from DDP's"
