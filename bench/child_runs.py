"""One training run per child process, its thread count fixed before torch starts: the benches measuring spread
over seeds (guard_spread.py, small_shapes_one_pass.py, stage_b.py) run each seed this way and append its JSON row to
a file, which a later sweep reads to skip the runs already done."""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from bench_files import refuse_foreign_rows


def seed_list(text: str) -> list[int]:
    """`"0-7"` or `"0,3,9"` -> a list of seeds."""
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return list(range(lo, hi + 1))
    return [int(v) for v in text.split(",")]


def _die_with_parent() -> None:
    """In the child, before it runs: Linux kills it when the sweep dies. A sweep killed with -9 left its child training
    for minutes, beside the rerun's child of the same seed, whose seconds (train_s) it then slowed."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_child(cmd: list[str], threads: int, out: Path, what: str) -> dict | None:
    """Run `cmd` with `threads` OpenMP/MKL threads; its last stdout line (JSON) is appended to `out` and returned.

    A failed child prints its stderr's tail naming `what` and returns None, so one bad seed does not end a sweep.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, preexec_fn=_die_with_parent)
    if done.returncode != 0:
        print(f"{what}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
        FAILED.append(what)
        return None
    row = json.loads(done.stdout.strip().splitlines()[-1])
    with out.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    return row


# The runs of this sweep whose child failed (`run_child`), which `end_sweep` makes the sweep's exit status.
FAILED: list[str] = []


def end_sweep() -> None:
    """Exit 1 naming the failed runs when any child of this sweep failed: a sweep whose every seed failed exited 0,
    and a script or CI reading its status took it for measured."""
    if FAILED:
        print(f"{len(FAILED)} run(s) of this sweep failed: {', '.join(FAILED)} (their errors are above; the rows of the "
              "others are kept, and a rerun runs only the failed ones)", file=sys.stderr)
        raise SystemExit(1)


def train_command(procs: int) -> list[str]:
    """`bbuvl` as one process, or as `procs` processes of one DDP run over gloo (docs/design.md, "Two processes on two cores")."""
    if procs == 1:
        return [sys.executable, "-m", "bbuvl.cli"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), "-m", "bbuvl.cli"]


def train_env(procs: int, threads: int) -> dict[str, str]:
    """The environment of a training launch: `threads` threads for one process, one thread each for several."""
    threads = 1 if procs > 1 else threads
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "ACCELERATE_USE_CPU": "true"}


def check_stages(ap: argparse.ArgumentParser, stages: str, known: dict) -> None:
    """Refuse (argparse's one line) a `--stages` name the bench does not train, before any photo is rendered."""
    unknown = [s for s in stages.split(",") if s not in known]
    if unknown:
        ap.error(f"--stages: {', '.join(unknown)} is not one of {', '.join(known)}")


def timed_training(config: str, batch: int, procs: int, data: Path, model: Path, out: Path, steps: int,
                   overrides: list[str], root: Path) -> tuple[float, str]:
    """Train `steps` steps of `batch` photos of `config` as `procs` one-thread processes (or one process with all the
    threads), from `root`; returns the trainer's seconds a step (process start and model loading excluded) and what
    the run printed (wide, so that its summary lines are not wrapped). `overrides` come after the run's own."""
    own = [f"model.path={model}", f"data.train={data / 'train.jsonl'}", "data.val=null", f"training.output_dir={out}",
           f"training.max_steps={steps}", f"training.per_device_batch_size={batch // procs}",
           "training.save_steps=100000", "training.eval_steps=100000"]
    done = subprocess.run(train_command(procs) + ["train", config, *own, *overrides, "--overwrite"], check=True,
                          env={**train_env(procs, os.cpu_count() or 1), "COLUMNS": "200"}, cwd=root,
                          capture_output=True, text=True)
    history = json.loads((out / "history.json").read_text())
    return next(h["train_runtime"] for h in history if "train_runtime" in h) / steps, done.stdout


SWEEP_ROW = {"seed", "threads", "steps", "train", "overrides"}  # what every sweep's row holds


_HELD: list = []  # the open `--out` whose lock this sweep holds until it exits


def finished_rows(out: Path) -> list[dict]:
    """The rows earlier sweeps appended to `out` (its folder is created), so a killed sweep resumes; exits with one
    line when `out` holds anything else (a dataset's JSONL given as `--out` is not appended to), or when another sweep
    is appending to it: both would run the same seeds, and the summary would count each twice."""
    rows = lambda: refuse_foreign_rows(out, lambda row: SWEEP_ROW <= set(row), "sweep rows")  # noqa: E731
    try:
        rows()
        out.parent.mkdir(parents=True, exist_ok=True)
        held = out.open("a", encoding="utf-8")
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.close()
            raise ValueError(f"{out}: another sweep is appending to it; wait for it to end, or give another --out") from None
        _HELD.append(held)
        return rows()  # read again under the lock: what a sweep that just ended appended counts as done
    except ValueError as e:
        raise SystemExit(str(e)) from None


def already_run(rows: list[dict], defaults: dict | None = None, **fields) -> bool:
    """Whether a row holds every field's value; a row written before a field existed takes its `defaults` value."""
    defaults = defaults or {}
    return any(all(r.get(k, defaults.get(k)) == v for k, v in fields.items()) for r in rows)


def head_predictions(checkpoint: Path, val: Path) -> tuple[list, list, float]:
    """A checkpoint's head-mode predictions on a validation file: its records, the results, seconds a photo."""
    import time

    from bbuvl.data.schema import read_records, resolve_image
    from bbuvl.infer.predictor import Predictor

    records = read_records(val)
    predictor = Predictor.load(checkpoint, device="cpu")
    start = time.perf_counter()
    results = predictor.predict([resolve_image(val, r.image) for r in records], "head")
    return records, results, (time.perf_counter() - start) / len(records)
