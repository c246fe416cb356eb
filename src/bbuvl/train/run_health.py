"""What a checkpoint's training records say of its losses: whether the run that saved it had gone non-finite.

A run whose loss turned NaN is stopped by the non-finite guard only after `training.max_consecutive_nan` steps in a
row (train/callbacks.py), and saves checkpoints meanwhile: the demo's tiny model trained at a learning rate of 1e8 had
a finite loss at step 1, NaN from step 2, and its checkpoint-5 answered `[]` for every photo, each judged "pass". The
weights stay finite (the guard skips each NaN step), so only the records, or a forward pass, tell.

The records are the checkpoint's own `trainer_state.json` (its `log_history` and the alarms the health monitor keeps
in it, train/monitors.py), else, for a run's `final/`, the run folder's `history.json` and `health.json` beside it.
A folder copied out of its run keeps only what it holds itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bbuvl.data.jsonfile import read_json
from bbuvl.train.monitors import HEALTH_FILE, HealthLog
from bbuvl.train.run_dir import FINAL_DIR, RUN_RECORDS

STATE_FILE = "trainer_state.json"  # HF's, in each numbered checkpoint
HISTORY_FILE = RUN_RECORDS[0]  # the run's log_history, beside its checkpoints (train/trainer.py `fit`)


@dataclass
class LossRecord:
    """The losses a checkpoint's run logged up to its save, and the non-finite ones among them."""

    source: Path  # the file the losses were read from
    logged: list[int] = field(default_factory=list)  # steps whose loss was logged
    nonfinite: list[int] = field(default_factory=list)  # of those, the steps whose loss was NaN or inf
    alarms: list[int] = field(default_factory=list)  # steps of the health monitor's non-finite alarms
    health: Path | None = None  # the run's health.json, when it is beside the checkpoint

    @property
    def diverged(self) -> bool:
        """Whether the last loss logged before the save was not finite: the run was diverging when it saved."""
        return bool(self.logged) and self.logged[-1] in self.nonfinite

    def said(self) -> str:
        """The non-finite losses and alarms in words, with where they were read."""
        parts = []
        if self.nonfinite:
            last = "the last one logged too" if self.diverged else f"the last one logged, step {self.logged[-1]}, finite"
            parts.append(f"the loss was not finite at {len(self.nonfinite)} of the {len(self.logged)} logged steps, "
                         f"{steps(self.nonfinite)}, {last}")
        if self.alarms:
            parts.append(f"{len(self.alarms)} non-finite alarm(s) at {steps(self.alarms)}")
        where = " and ".join(str(p) for p in (self.source, self.health) if p is not None)
        return f"{'; '.join(parts) or 'every logged loss finite'}, as {where} record"


def steps(numbers: list[int]) -> str:
    """`step 2`, `steps 2-5`, `steps 2, 4, 7 ...`: a list of steps in few words."""
    if len(numbers) == 1:
        return f"step {numbers[0]}"
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"steps {numbers[0]}-{numbers[-1]}"
    return "steps " + ", ".join(map(str, numbers[:5])) + (" ..." if len(numbers) > 5 else "")


def _read(path: Path, what: str) -> Any:
    """The JSON in `path`, or None when it is not there or cannot be read (its own readers name a damaged one)."""
    try:
        return read_json(path, what) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _losses(history: Any) -> tuple[list[int], list[int]]:
    """(steps logged, steps whose loss was not finite) of a log_history list."""
    logged, nonfinite = [], []
    for entry in history if isinstance(history, list) else []:
        loss, step = (entry.get("loss"), entry.get("step")) if isinstance(entry, dict) else (None, None)
        if isinstance(loss, (int, float)) and isinstance(step, int):
            logged.append(step)
            if not math.isfinite(loss):
                nonfinite.append(step)
    return logged, nonfinite


def _alarm_steps(alarms: Any) -> list[int]:
    """The steps of the non-finite alarms in a list of saved alarms (train/monitors.py `Alarm`)."""
    if not isinstance(alarms, list):
        return []
    return sorted({a["step"] for a in alarms
                   if isinstance(a, dict) and a.get("kind") == "nonfinite" and isinstance(a.get("step"), int)})


def loss_record(checkpoint: str | Path) -> LossRecord | None:
    """The losses logged up to `checkpoint`'s save and its run's non-finite alarms; None when it carries no record
    (an export, a base model, a final/ copied out of its run)."""
    checkpoint = Path(checkpoint)
    run = checkpoint.parent
    health = run / HEALTH_FILE if run.joinpath(HEALTH_FILE).is_file() else None
    state = _read(checkpoint / STATE_FILE, "trainer state")
    if isinstance(state, dict):
        logged, nonfinite = _losses(state.get("log_history"))
        saved = (state.get("stateful_callbacks") or {}).get(HealthLog.__name__)
        alarms = saved.get("attributes", {}).get("alarms") if isinstance(saved, dict) else None
        return LossRecord(checkpoint / STATE_FILE, logged, nonfinite, _alarm_steps(alarms), health)
    if checkpoint.name != FINAL_DIR or not (run / HISTORY_FILE).is_file():
        return None
    logged, nonfinite = _losses(_read(run / HISTORY_FILE, "training history"))
    report = _read(health, "training health") if health is not None else None
    alarms = _alarm_steps(report.get("alarms") if isinstance(report, dict) else None)
    return LossRecord(run / HISTORY_FILE, logged, nonfinite, alarms, health)
