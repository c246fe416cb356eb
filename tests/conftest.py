"""Shared fixtures: a tiny offline Qwen2.5-VL (built once per session) and small synthetic images."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import accelerate.utils.memory
import pytest
import torch
import typer.main
import typer.testing

# One thread: the tiny models gain little from two, and two threads under any other load were measured ~50x slower.
torch.set_num_threads(1)
# No test may reach the hub: an accidental hub id fails at once instead of retrying for half a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _no_fsync(fd: int) -> None:
    """`os.fsync` in the test processes: the call is made, the wait for the disk is not."""


# Every atomic write syncs its file to the disk (src/bbuvl/atomic.py), which only a power cut could ever tell apart
# and no test makes one: the waits were 8% of the time of tests/train/test_trainer.py, tests/cli/test_stops.py and
# tests/data/test_synth_cli.py (1,033 syncs, 8 s of 105 s on the shared 2-core machine). The code still calls
# os.fsync, so a test that makes it fail (tests/reliability/faults.py disk_full_after, a monkeypatch) still does;
# the commands the tests start as processes of their own still sync.
os.fsync = _no_fsync


def _clear_device_cache_only(garbage_collection: bool = False) -> None:
    """accelerate's `clear_device_cache` in the test processes: the device cache is emptied, no full collection run."""
    _clear_device_cache(garbage_collection=False)


# Every transformers training loop starts with a full garbage collection (accelerate's free_memory, for a GPU's cache),
# which walks every object a test process holds, more as a worker runs on: 6-11 s of the 63-69 s of CPU of
# tests/train/test_trainer.py's 28 tests, measured back to back. The interpreter still collects as it always does; the
# commands the tests start as processes of their own still run the full one.
_clear_device_cache = accelerate.utils.memory.clear_device_cache
accelerate.utils.memory.clear_device_cache = _clear_device_cache_only


def _registered(app: typer.Typer) -> tuple:
    """What typer builds a Typer app's click command from: its callback, commands and groups, by identity."""
    info = app.registered_callback
    return (id(info.callback) if info else None, tuple(id(c.callback) for c in app.registered_commands),
            tuple((g.name, _registered(g.typer_instance)) for g in app.registered_groups if g.typer_instance))


_BUILT: dict[int, tuple[typer.Typer, tuple, Any]] = {}


def _command_built_once(typer_instance: typer.Typer) -> Any:
    """typer's `get_command` in the test processes: an app's click command built once, again only if its commands
    changed."""
    shape = _registered(typer_instance)
    built = _BUILT.get(id(typer_instance))
    if built is None or built[0] is not typer_instance or built[1] != shape:
        built = _BUILT[id(typer_instance)] = (typer_instance, shape, _get_command(typer_instance))
    return built[2]


# typer builds an app's whole click command, reading every command's signature and annotations, at each run of it:
# 0.12-0.17 s for `bbuvl`'s app on the 2-core machine, paid by each of the CliRunner.invoke and in-process `bbuvl`
# runs of the suite. A real process builds it once, as here; the command and what a test reads of it are the same.
_get_command = typer.main.get_command
typer.main.get_command = typer.testing._get_command = _command_built_once


# The longest files of the default run, sent to the pytest-xdist workers first (`make test`, --dist loadfile): one
# worker trains a guard while the other runs the short tests, instead of a guard starting last and running alone.
LONGEST_FIRST = ("tests/test_learnability.py", "tests/test_small_parts_learnability.py", "tests/test_gpu_bench.py",
                 "tests/train/test_monitors.py")


def pytest_collection_modifyitems(config, items) -> None:
    """Put the longest files first (stable otherwise): with workers, the run ends when the longest file does."""
    def rank(item) -> int:
        path = Path(str(item.fspath)).as_posix()
        return next((k for k, name in enumerate(LONGEST_FIRST) if path.endswith(name)), len(LONGEST_FIRST))

    items.sort(key=rank)


def pytest_collection_finish(session) -> None:
    """Freeze what collection left (torch, transformers, the test modules: some 200,000 objects) out of the garbage
    collector's full passes, each of which walked them all again: a quarter of the collector's time (measured on
    tests/model/test_export.py, 2.6 s of 20 s CPU before, 2.0 s after)."""
    # Hypothesis's plugins (trio's) check the PRNG they register with gc.get_referrers, which frozen objects escape:
    # loaded after the freeze, they warned that it could be collected at once
    import hypothesis  # noqa: F401

    gc.collect()
    gc.freeze()


def pytest_deselected(items) -> None:
    """Count what the marker expression left out, on a pytest-xdist worker too (its controller collects nothing)."""
    global _DESELECTED
    _DESELECTED += len(items)


_DESELECTED = 0


def pytest_sessionfinish(session, exitstatus) -> None:
    """A pytest-xdist worker hands its deselected count to the controller (`pytest_testnodedown`)."""
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["deselected"] = _DESELECTED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """Every worker collects the whole suite and deselects alike: the controller keeps one worker's count."""
    global _WORKER_DESELECTED
    _WORKER_DESELECTED = max(_WORKER_DESELECTED, getattr(node, "workeroutput", {}).get("deselected", 0))


_WORKER_DESELECTED = 0


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """How many tests skipped, grouped by reason (most first), and how many the marker expression deselected:
    a test that never runs is not a test, so the summary says which ones did not and why."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    deselected = len(terminalreporter.stats.get("deselected", [])) or _WORKER_DESELECTED
    if not reasons and not deselected:
        return
    # Under CI a skip is a test the pipeline believes it ran: make it hard to miss.
    loud = {"yellow": True, "bold": True} if os.environ.get("CI", "").lower() in ("1", "true", "yes") else {}
    skipped = sum(reasons.values())
    terminalreporter.write_sep("=", f"not run: {skipped} skipped{' (by reason)' if skipped else ''}, {deselected} deselected",
                               **loud)
    for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        terminalreporter.write_line(f"{n:4d}  {reason}", **loud)
    if deselected:
        chosen = " and ".join(f"{flag} '{expr}'" for flag, expr in
                              (("-m", config.option.markexpr), ("-k", config.option.keyword)) if expr)
        hint = " (`make test-all` runs the slow ones)" if "slow" in config.option.markexpr else ""
        terminalreporter.write_line(f"{deselected:4d}  deselected by {chosen or 'the command line'}{hint}")


# Every test on the shared tiny model runs once per family: Qwen2.5-VL in the default run, the others in
# `make test-all` (the default run keeps one end-to-end train -> predict -> eval per family, tests/test_families.py).
FAMILIES = [
    pytest.param("qwen2_5_vl", id="qwen2_5_vl"),
    pytest.param("qwen3_vl", id="qwen3_vl", marks=pytest.mark.slow),
    pytest.param("qwen3_5", id="qwen3_5", marks=pytest.mark.slow),
]


@pytest.fixture()
def one_thread():
    """One torch thread while a test runs (use with `pytestmark = pytest.mark.usefixtures("one_thread")`): tiny
    matrices gain nothing from a second thread, and on the shared 2-core machines two intra-op threads made the
    head's overfit test ~5x slower (measured 40 s vs 8 s), spinning against other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", params=FAMILIES)
def tiny_family(request) -> str:
    """The model family of the shared tiny model (`model_type`)."""
    return request.param


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_family, tmp_path_factory) -> Path:
    """A tiny checkpoint of `tiny_family` saved with save_pretrained (same loading path as a real one)."""
    from bbuvl.tiny.model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp(f"tiny-{tiny_family}") / "model", seed=0, family=tiny_family)


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """(model, processor) loaded through bbuvl's one loading path, in eval mode, fp32."""
    from bbuvl.model.loading import load_model_and_processor

    model, processor = load_model_and_processor(str(tiny_model_dir), dtype="float32", attn_implementation="sdpa")
    model.eval()
    return model, processor


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """8 train / 2 val synthetic photos at 224x168 with at most 3 objects each (short answers keep steps fast)."""
    from bbuvl.data.schema import read_records, write_dataset
    from bbuvl.synthetic.dataset import synthesize

    out = tmp_path_factory.mktemp("small") / "data"
    synthesize(out, 8, 2, seed=1, size=(224, 168), num_teachers=3)
    for name in ("train.jsonl", "val.jsonl", "teachers.jsonl"):
        records = read_records(out / name)
        write_dataset(out / name, [r.model_copy(update={"objects": r.objects[:3]}) for r in records])
    return out


@pytest.fixture()
def run_config(tiny_model_dir, small_dataset, tmp_path):
    """A fast CPU training config on the small dataset; call with overrides."""
    return run_config_at(tiny_model_dir, small_dataset, tmp_path / "run")


def run_config_at(tiny_model_dir: Path, small_dataset: Path, out: Path):
    """The `run_config` fixture's `make(*overrides)`, its run written to `out` (for a fixture wider than a test)."""
    from bbuvl.config import load_config

    def make(*overrides: str):
        base = [
            f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
            f"data.train={small_dataset / 'train.jsonl'}", f"data.val={small_dataset / 'val.jsonl'}",
            f"data.teachers={small_dataset / 'teachers.jsonl'}", "data.num_workers=0", "data.teacher_ratio=0.5",
            f"training.output_dir={out}", "training.per_device_batch_size=2", "training.gradient_accumulation_steps=1",
            "training.max_steps=4", "training.logging_steps=1", "training.save_steps=100", "training.eval_steps=100",
            "training.bf16=false", "training.gradient_checkpointing=false", "training.use_cpu=true", "training.warmup_ratio=0",
            "training.lr.vision=1e-3", "training.lr.merger=1e-3", "training.lr.llm=1e-3", "training.lr.detection=1e-3",
            "training.lr.adapter=1e-3", "detection.num_queries=8", "detection.num_heads=4", "detection.caption_layers=1",
            "detection.decoder_layers=1", "detection.dropout=0.0",
        ]
        return load_config(None, base + list(overrides))

    return make


@pytest.fixture(scope="session")
def trained_checkpoint(tiny_model_dir, small_dataset, tmp_path_factory) -> Path:
    """A checkpoint from 2 training steps (with detection head) on the small dataset."""
    from bbuvl.config import load_config
    from bbuvl.train.trainer import train

    out = tmp_path_factory.mktemp("ckpt") / "run"
    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        f"data.train={small_dataset / 'train.jsonl'}", "data.val=null", f"data.teachers={small_dataset / 'teachers.jsonl'}",
        "data.num_workers=0", f"training.output_dir={out}", "training.per_device_batch_size=2", "training.max_steps=2",
        "training.gradient_accumulation_steps=1",
        "training.bf16=false", "training.gradient_checkpointing=false", "training.use_cpu=true", "training.save_steps=100",
        "detection.num_queries=8", "detection.num_heads=4", "detection.caption_layers=1", "detection.decoder_layers=1",
        "inference.max_new_tokens=48", "inference.objectness_threshold=0.0", "inference.batch_size=2",
    ])
    return Path(train(cfg, progress=False)["final"])


@pytest.fixture(scope="session")
def diverged_checkpoint(tiny_model_dir, small_dataset, tmp_path_factory) -> Path:
    """The newest checkpoint of a run (with a detection head) at a learning rate of 1e8: step 1's update blows the
    weights up, the loss is NaN from step 2 on, and the non-finite guard stops the run after 2 such steps in a row,
    having saved a checkpoint at each (the run folder's health.json and each checkpoint's trainer_state.json say so)."""
    from bbuvl.config import load_config
    from bbuvl.train.callbacks import TrainingDiverged
    from bbuvl.train.run_dir import numbered_checkpoints
    from bbuvl.train.trainer import train

    out = tmp_path_factory.mktemp("diverged") / "run"
    cfg = load_config(None, [
        f"model.path={tiny_model_dir}", "model.dtype=float32", "model.min_pixels=12544", "model.max_pixels=50176",
        f"data.train={small_dataset / 'train.jsonl'}", f"data.val={small_dataset / 'val.jsonl'}", "data.teachers=null",
        "data.num_workers=0", f"training.output_dir={out}", "training.per_device_batch_size=2", "training.max_steps=8",
        "training.gradient_accumulation_steps=1", "training.bf16=false", "training.gradient_checkpointing=false",
        "training.use_cpu=true", "training.save_steps=1", "training.logging_steps=1", "training.eval_steps=100",
        "training.warmup_ratio=0", "training.max_grad_norm=1e30", "training.max_consecutive_nan=2",
        *(f"training.lr.{group}=1e8" for group in ("vision", "merger", "llm", "detection", "adapter")),
        "detection.num_queries=8", "detection.num_heads=4", "detection.caption_layers=1", "detection.decoder_layers=1",
        "detection.caption_refit.steps=0", "inference.max_new_tokens=16",
    ])
    with pytest.raises(TrainingDiverged):
        train(cfg, progress=False)
    return numbered_checkpoints(out)[-1]
