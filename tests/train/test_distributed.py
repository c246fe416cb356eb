"""Two processes on CPU (gloo), accumulation 2: DDP and DeepSpeed ZeRO-2 train like one process with the whole
effective batch (docs/training_loss_scale.md)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.launch import DEEPSPEED_CPU_CLI, ZERO2, launch_command

pytestmark = pytest.mark.slow

# Teachers in some samples only and the head on: every denominator (teacher and student tokens, objects) varies
# between micro-batches and ranks.
COMMON = ("training.max_steps=3", "data.teacher_ratio=0.5", "detection.enabled=true", "data.val=null")
RUNS = {  # name: (processes, overrides); 4 photos per optimizer step in each
    "one": (1, ("training.per_device_batch_size=4", "training.gradient_accumulation_steps=1")),
    "ddp": (2, ("training.per_device_batch_size=1", "training.gradient_accumulation_steps=2")),
    # DeepSpeed runs on its CPU accelerator, which accelerate only takes when not told to use the CPU.
    "zero2": (2, ("training.per_device_batch_size=1", "training.gradient_accumulation_steps=2", f"training.deepspeed={ZERO2}",
                  "training.use_cpu=false")),
}
# The 8 photos in steps of 6: the second step's turn on two processes of 3 holds 2 photos, then stand-ins
# (train/stand_ins.py), where accelerate had filled it with the epoch's first photos again
UNEVEN = ("training.max_steps=2", "data.teacher_ratio=0.5", "detection.enabled=true", "data.val=null")
RUNS_UNEVEN = {"one": (1, ("training.per_device_batch_size=6",)), "ddp": (2, ("training.per_device_batch_size=3",))}


@pytest.fixture(scope="module")
def histories() -> dict:
    """Logged histories by run name, so that each run is trained once per module."""
    return {}


def _history(name: str, run_config, tmp_path: Path, histories: dict, uneven: bool = False) -> list[dict]:
    key = f"uneven-{name}" if uneven else name
    if key not in histories:
        from bbuvl.config import dump_config

        processes, overrides = (RUNS_UNEVEN if uneven else RUNS)[name]
        out = tmp_path / key
        cfg_file = tmp_path / f"{key}.yaml"
        common = UNEVEN if uneven else COMMON
        cfg = run_config(*common, *overrides, f"training.output_dir={out}")
        cfg_file.write_text(dump_config(cfg), encoding="utf-8")
        deepspeed = any(o.startswith("training.deepspeed=") for o in overrides)
        env = {**os.environ, "OMP_NUM_THREADS": "1", **({} if deepspeed else {"ACCELERATE_USE_CPU": "true"})}
        cli = DEEPSPEED_CPU_CLI if deepspeed else ("-m", "bbuvl.cli")
        launch = launch_command(processes, 29517 + len(histories), cli)
        subprocess.run(launch + ["train", str(cfg_file)], check=True, env=env, timeout=600)
        logged = json.loads((out / "history.json").read_text())
        histories[key] = [h for h in logged if "loss" in h and "train_runtime" not in h]
    return histories[key]


def _assert_same_curve(a: list[dict], b: list[dict], steps: int = 3) -> None:
    assert [h["step"] for h in a] == [h["step"] for h in b] == list(range(1, steps + 1))
    for x, y in zip(a, b):
        assert sorted(k for k in x if k.startswith(("loss", "lm_"))) == sorted(k for k in y if k.startswith(("loss", "lm_")))
        for k in (k for k in x if k.startswith(("loss", "lm_")) or k == "grad_norm"):
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-6), (k, x, y)


def test_two_process_ddp_with_accumulation_matches_one_process_with_the_whole_batch(run_config, tmp_path, histories):
    # Same photos per step, same initial weights; counts summed over micro-batches and ranks: the same curve.
    _assert_same_curve(_history("one", run_config, tmp_path, histories), _history("ddp", run_config, tmp_path, histories))


def test_deepspeed_zero2_with_accumulation_logs_what_ddp_logs(run_config, tmp_path, histories):
    pytest.importorskip("deepspeed", reason="the [deepspeed] extra is not installed")
    # DeepSpeed divides by the accumulation steps itself unless told not to (Trainer tells it): a double or
    # missing division would show in grad_norm and, through clipping, in the later losses.
    _assert_same_curve(_history("ddp", run_config, tmp_path, histories), _history("zero2", run_config, tmp_path, histories))


def test_two_processes_whose_last_turn_is_not_full_train_each_photo_once_as_one_process_does(run_config, tmp_path,
                                                                                              histories):
    # One epoch of 8 photos: steps of 6 and 2. Had the second step's empty places held the epoch's first photos
    # again (accelerate's even batches), its loss, gradient and update would differ from one process's.
    _assert_same_curve(_history("one", run_config, tmp_path, histories, uneven=True),
                       _history("ddp", run_config, tmp_path, histories, uneven=True), steps=2)


def test_two_processes_resumed_inside_an_epoch_with_stand_ins_train_the_rest_of_that_epoch(run_config, tmp_path):
    # Epochs of 2 steps; the run stops after step 3, inside epoch 1, and is resumed. The loader that skips the batches
    # already trained set no epoch on the stand-in sampler, and step 4 drew from epoch 0's order.
    from bbuvl.config import dump_config

    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    steps = {}
    for name, runs in (("whole", [("4", [])]), ("resumed", [("3", []), ("4", ["--resume"])])):
        out = tmp_path / name
        for k, (max_steps, flags) in enumerate(runs):
            cfg_file = tmp_path / f"{name}.yaml"
            cfg = run_config(*UNEVEN[1:], *RUNS_UNEVEN["ddp"][1], f"training.max_steps={max_steps}",
                             "training.save_steps=3", "training.lr_scheduler=constant", f"training.output_dir={out}")
            cfg_file.write_text(dump_config(cfg), encoding="utf-8")
            subprocess.run(launch_command(2, 29541 + 2 * len(steps) + k) + ["train", str(cfg_file), *flags],
                           check=True, env=env, timeout=600)
        logged = json.loads((out / "history.json").read_text())
        steps[name] = {h["step"]: h for h in logged if "loss" in h and "train_runtime" not in h}
    assert steps["resumed"][4]["loss"] == pytest.approx(steps["whole"][4]["loss"], rel=1e-4, abs=1e-6)
    assert steps["resumed"][4]["grad_norm"] == pytest.approx(steps["whole"][4]["grad_norm"], rel=1e-4, abs=1e-6)
