"""Trainer callbacks: epoch bookkeeping, head freezing, the non-finite guard, early stopping, TensorBoard per run, a rich
progress bar and the rotation of numbered checkpoints.

The training-health monitors (alarms) are the other callbacks of a run: train/monitors.py.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from torch.nn.utils import get_total_norm
from transformers import TrainerCallback, TrainerState
from transformers.integrations import TensorBoardCallback
from transformers.trainer_callback import ExportableState

from bbuvl.atomic import remove_dead_removals, remove_path, remove_whole
from bbuvl.config import MonitorConfig
from bbuvl.encode.loss_terms import LossTerms
from bbuvl.outputs import reader_around

# The terms the trainer logs (LossTerms), each a loss, lower better, as `eval_NAME` at each evaluation
LOSS_TERM_NAMES = frozenset(f.name for f in fields(LossTerms))

if TYPE_CHECKING:
    from bbuvl.train.monitors import HealthLog

log = logging.getLogger(__name__)
health_log = logging.getLogger("bbuvl.health")  # the monitors' logger: early stopping's warnings sit with their alarms


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps with non-finite loss or gradients."""


@dataclass
class Throughput:
    """Counters the trainer fills per micro-batch, read by the progress bar."""

    samples: int = 0
    text_tokens: int = 0
    vision_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)

    def rates(self) -> tuple[float, float, float]:
        """Samples/s, text tokens/s, vision tokens/s since the start."""
        dt = max(time.perf_counter() - self.started, 1e-9)
        return self.samples / dt, self.text_tokens / dt, self.vision_tokens / dt


class EpochCallback(TrainerCallback):
    """Tells the dataset the epoch (teacher draws) and holds the head back for `detection_freeze_epochs`, counted in
    optimizer steps: that share of an epoch's steps, rounded (docs/design.md, "Holding the head back")."""

    def __init__(self, dataset, model, freeze_epochs: float):
        self.dataset, self.model, self.freeze_epochs = dataset, model, freeze_epochs
        self.freeze_steps = 0  # the steps the head is held back for, counted once the loader is built

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):  # noqa: D102
        if self.model.detection_head is None or not self.freeze_epochs or train_dataloader is None:
            return
        per_epoch = steps_per_epoch(len(train_dataloader), args.gradient_accumulation_steps)
        self.freeze_steps = freeze_steps(self.freeze_epochs, per_epoch)
        # A freeze of every epoch the config asks for is said already, when the run starts (config.py, `run_notes`)
        said = args.max_steps <= 0 and self.freeze_epochs >= args.num_train_epochs
        if self.freeze_steps >= state.max_steps and state.is_world_process_zero and not said:
            log.warning("training.detection_freeze_epochs %g holds the detection head back for %d steps (%d an epoch), "
                        "the whole run of %d steps: the head never trains, and the checkpoints hold the one it started "
                        "with; lower training.detection_freeze_epochs, or train more steps",
                        self.freeze_epochs, self.freeze_steps, per_epoch, state.max_steps)

    def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: D102
        epoch = int((state.epoch or 0) + 1e-6)  # a resume mid-epoch (e.g. 0.75) is still epoch 0
        self.dataset.set_epoch(epoch)

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: D102
        if self.model.detection_head is None:
            return
        active = state.global_step >= self.freeze_steps  # a resume mid-freeze holds it for the steps left
        if active != self.model.detection_active:
            log.info("detection head %s at step %d", "enabled" if active else "frozen", state.global_step + 1)
        self.model.detection_active = active


def steps_per_epoch(batches: int, accumulation: int) -> int:
    """Optimizer steps in an epoch of `batches` micro-batches, as HF counts them (a last short step counts)."""
    return max(math.ceil(batches / accumulation), 1)


def freeze_steps(epochs: float, per_epoch: int) -> int:
    """The steps `epochs` of `per_epoch` steps each hold the head back: the nearest whole step (a half to even)."""
    return round(epochs * per_epoch)


class CarriedState(ExportableState):
    """A callback whose counters go into every numbered checkpoint and come back when a run resumes from it.

    HF writes `state()` into the checkpoint's trainer_state.json (written last, so a complete checkpoint has them).
    Its own restore rebuilds a callback from arguments alone, which ours (holding the model, the config) cannot be:
    so each takes its counters back itself when training begins. A resumed run then counts on as one that never
    stopped: the skipped steps, a non-finite streak, the alarms, early stopping's patience (docs/resume.md).
    """

    carried: tuple[str, ...] = ()  # the attributes a resumed run takes back

    def state(self) -> dict:
        """What HF saves: no arguments, the carried attributes (JSON values)."""
        return {"args": {}, "attributes": {k: getattr(self, k) for k in self.carried}}

    def load_state(self, attributes: dict) -> None:
        """Set the carried attributes from their saved JSON values."""
        for k, v in attributes.items():
            setattr(self, k, v)

    def take_back(self, state: TrainerState) -> None:
        """Take the carried attributes back from the checkpoint a run resumes (a fresh run's are its own)."""
        saved = state.stateful_callbacks.get(type(self).__name__)
        if isinstance(saved, dict):
            self.load_state({k: v for k, v in saved.get("attributes", {}).items() if k in self.carried})
        # A checkpoint saved before this callback carried state has no entry, and HF's next save expects one.
        state.stateful_callbacks[type(self).__name__] = self.state()


class LossSum(CarriedState, TrainerCallback):
    """The training loss summed over every step up to each numbered checkpoint (`total`, set by the trainer as it
    saves), so that a resumed run's `train_loss` is the mean over all its steps: HF's is over the steps one process
    ran, and a run resumed at step 2 of 8 logged the mean of steps 3-8 (docs/resume.md)."""

    carried = ("total",)

    def __init__(self) -> None:
        self.total: float | None = 0.0
        self.before: float | None = 0.0  # the steps' sum before this process; None: a checkpoint saved without it
        # The step this process started at (a resumed checkpoint's): recorded here, where Trainer's own record of it
        # is private and missing from transformers before 5.19, which pyproject.toml allows
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        saved = type(self).__name__ in state.stateful_callbacks
        self.take_back(state)
        self.first_step = state.global_step
        self.before = self.total if saved or state.global_step == 0 else None


class LogWindow(CarriedState, TrainerCallback):
    """Values summed over the logging window (the closed steps since the last log), each beside the count its mean
    divides it by; carried in every numbered checkpoint, so that a run resumed inside a window logs its first means
    over the whole window, as one that never stopped does (docs/resume.md).

    Each rank holds its share of the sums; at a save the first rank takes them all (`gather`), so a checkpoint holds
    the whole window however many processes resume it."""

    carried = ("sums", "counts")
    shared_counts = False  # each rank counts its own items (rollouts, tokens), summed; True: every rank counts the same

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        self.take_back(state)
        if args.process_index != 0:  # every rank reads the checkpoint: the first one alone adds its share in
            self.sums = dict.fromkeys(self.sums, 0.0)
            if not self.shared_counts:
                self.counts = dict.fromkeys(self.counts, 0.0)

    def load_state(self, attributes: dict) -> None:
        """Take a saved window back whole; one saved under other names (an older bbu-vl) is left out, as none."""
        if set(self.carried) <= attributes.keys():  # half a window would log its sums over no count
            super().load_state(attributes)

    def names(self) -> list[str]:
        """What every rank reduces, in one order: the names added (every rank adds the same ones)."""
        return sorted(self.sums)

    def add(self, name: str, total: float, count: float) -> None:
        """Add `total` over `count` items (steps, rollouts, tokens) to `name`; a count of 0 adds to the sum alone."""
        self.sums[name] = self.sums.get(name, 0.0) + total
        self.counts[name] = self.counts.get(name, 0.0) + count

    def totals(self, device: torch.device) -> torch.Tensor:
        """Each of `names()`'s sum, count and whether any rank added it, over every rank `[n_names, 3]`."""
        names = self.names()
        sums = torch.tensor([[self.sums.get(k, 0.0), k in self.sums] for k in names], dtype=torch.float64,
                            device=device).view(-1, 2)
        counts = torch.tensor([self.counts.get(k, 0.0) for k in names], dtype=torch.float64, device=device)
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(sums)  # each rank holds its share of every step
            dist.all_reduce(counts, op=dist.ReduceOp.MAX if self.shared_counts else dist.ReduceOp.SUM)
        return torch.stack([sums[:, 0], counts, sums[:, 1]], dim=1)

    def means(self, device: torch.device) -> dict[str, float]:
        """Each name any rank added: its sum over its count, over every rank (0 where nothing was counted); then the
        window is empty."""
        names, t = self.names(), self.totals(device)
        self.clear()
        return {k: float(t[i, 0] / t[i, 1]) if t[i, 1] > 0 else 0.0 for i, k in enumerate(names) if t[i, 2] > 0}

    def gather(self, device: torch.device, first: bool) -> None:
        """Hold the whole window in the first rank, nothing in the others (their sum is unchanged), as a save wants it."""
        t = self.totals(device)
        seen = [(i, k) for i, k in enumerate(self.names()) if t[i, 2] > 0]
        self.sums = {k: float(t[i, 0]) if first else 0.0 for i, k in seen}
        self.counts = {k: float(t[i, 1]) if first or self.shared_counts else 0.0 for i, k in seen}

    def clear(self) -> None:
        """Start the next window."""
        self.sums, self.counts = {}, {}


NONFINITE = "nonfinite_steps"  # `LossWindow`'s count of the steps whose loss was not finite, in no term's sum


class LossWindow(LogWindow):
    """Each loss term summed over the closed steps of the logging window and the steps each was averaged over, and
    the window's non-finite steps (`NONFINITE`); every rank counts the same steps."""

    shared_counts = True

    def names(self) -> list[str]:
        """Every `LossTerms` term, then `NONFINITE`: a rank whose steps were all non-finite added no term."""
        return [*LossTerms.names(), NONFINITE]

    def add_step(self, parts: dict[str, float], absent: set[str]) -> None:
        """Add a closed step's terms; a term in `absent` is summed but not counted as a step (no tokens of its span)."""
        for k, v in parts.items():
            self.add(k, v, k not in absent)

    def add_nonfinite(self) -> None:
        """Count a closed step whose loss was not finite: its terms are in no sum."""
        self.add(NONFINITE, 1.0, 1.0)


class NonFiniteGuard(CarriedState, TrainerCallback):
    """Skips an optimizer step whose loss on any rank or whose gradients are not finite; stops after `max_consecutive`
    in a row. Its verdict on a step is the same on every rank (`skipped_step`), which the trainer logs the step by."""

    carried = ("skipped", "consecutive")

    def __init__(self, model: torch.nn.Module, max_consecutive: int):
        self.model, self.max_consecutive = model, max_consecutive
        self.skipped = 0
        self.consecutive = 0
        self.last_skipped = 0  # the last step skipped (0: none since this process started)
        self._loss_nonfinite = False  # a micro-batch of the step being taken had a non-finite loss on this rank
        self._diverged: str | None = None  # raised at the step's end, once every callback has seen the step

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        self.take_back(state)

    def saw_nonfinite_loss(self) -> None:
        """Note that this rank computed a non-finite loss in the step being taken (the trainer calls it)."""
        self._loss_nonfinite = True

    def skipped_step(self, step: int) -> bool:
        """Whether optimizer step `step` (1-based) was skipped: the same answer on every rank."""
        return step == self.last_skipped

    def on_pre_optimizer_step(self, args, state, control, **kwargs):  # noqa: D102
        # The gradients are reduced over the ranks already; the loss is each rank's own, and a rank whose loss alone went
        # non-finite left the others logging the step as taken, with their shares of its loss alone (half its value)
        loss_nonfinite = on_any_rank(self._loss_nonfinite, args.device)
        self._loss_nonfinite = False
        if gradients_finite(self.model) and not loss_nonfinite:
            self.consecutive = 0
            return
        self.last_skipped = state.global_step + 1
        self.skipped += 1
        self.consecutive += 1
        for p in self.model.parameters():
            p.grad = None  # the optimizer skips parameters without a gradient: the step becomes a no-op
        if state.is_world_process_zero:  # every rank skips the step alike (`on_any_rank`): the first says so
            log.warning("step %d: non-finite loss or gradients, optimizer step skipped (%d so far)", state.global_step + 1,
                        self.skipped)
        if self.consecutive >= self.max_consecutive:
            # Not raised here: the health monitors come after this guard and would never see the step that stops the
            # run (its alarm naming the groups gone non-finite was missing from health.json).
            self._diverged = (
                f"step {state.global_step + 1}: {self.consecutive} consecutive steps with non-finite loss or gradients "
                f"(training.max_consecutive_nan={self.max_consecutive}); offending batches are in "
                f"{args.output_dir}/nan_batches/, the alarms in {args.output_dir}/health.json. Lower the learning "
                "rate, check those samples, or use bf16 instead of fp16.")

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        if self._diverged is not None:
            raise TrainingDiverged(self._diverged)


def on_any_rank(flag: bool, device: torch.device | str) -> bool:
    """Whether `flag` is true on any rank of the run (this rank's alone in one process): a collective, every rank calls
    it; `device` is where the backend reduces (the rank's GPU under NCCL)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t)


def gradients_finite(model: torch.nn.Module) -> bool:
    """Whether every gradient of `model` is finite, with one host sync for all of them in the common case.

    NaN and inf propagate into a norm. Each gradient's 2-norm (float32) is the fast check: on CPU 8x faster than
    the max-abs norm (1.8 against 14.7 ms over the tiny model's 162 gradients). It can also overflow on finite
    entries (past about 1e19), so only when it is not finite does the max-abs norm, which cannot, decide.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return True
    norms = torch.stack([torch.linalg.vector_norm(g, 2, dtype=torch.float32) for g in grads])
    if bool(torch.isfinite(norms).all()):
        return True
    return bool(torch.isfinite(get_total_norm(grads, norm_type=float("inf"))))


class RunTensorBoard(TensorBoardCallback):
    """HF's TensorBoard logging, into this run's `{output_dir}/tb` (beside the health monitors' events).

    transformers 5 reads the folder from the TENSORBOARD_LOGGING_DIR environment variable only, a process
    global that a second run in the same process would inherit; the callback's `logging_dir` is per run.
    """

    def __init__(self, log_dir: str | Path):
        super().__init__()
        self.logging_dir = str(log_dir)

    def close(self) -> None:
        """Close the events writer, as `on_train_end` does, for a run that never reached it (train/monitors.py
        `closing_event_writers`)."""
        if self.tb_writer is not None:
            self.tb_writer.close()
            self.tb_writer = None


class CheckpointRotation(TrainerCallback):
    """`training.save_total_limit`: after each save, the run's `checkpoint-N/` older than its newest `limit` are deleted,
    except one that a live reader of another process holds (`bbuvl serve` or `predict` started on it before this run,
    a run whose model.path it is): that one is kept, named once, and deleted at a later save once it is free.

    HF's own rotation (`TrainingArguments.save_total_limit`, left unset) deleted it under the reader. This one runs on
    the public `on_save`, after HF has written the whole checkpoint, and orders by step, not by the folders' times.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.held: set[str] = set()  # checkpoints kept for a reader, each named once

    def on_save(self, args, state, control, **kwargs):  # noqa: D102
        if args.should_save:
            self.rotate(Path(args.output_dir))

    def on_train_end(self, args, state, control, **kwargs):  # noqa: D102
        if args.should_save:  # a checkpoint freed since the last save goes now, not at the next run's first save
            self.rotate(Path(args.output_dir))

    def rotate(self, output_dir: Path) -> list[Path]:
        """Delete the numbered checkpoints in `output_dir` older than its newest `limit` that no live reader holds;
        the ones deleted."""
        from bbuvl.train.run_dir import numbered_checkpoints  # run_dir imports monitors, which import this module

        deleted = []
        # a deletion a kill cut short: nothing of it is read (`.deleting`: named so before it carried the remover's pid)
        remove_dead_removals(output_dir)
        for stray in output_dir.glob(".checkpoint-*.deleting"):
            remove_path(stray, ignore_errors=True)
        for path in numbered_checkpoints(output_dir)[:-self.limit]:
            reader = reader_around(path)
            if reader is not None:
                if path.name not in self.held:
                    self.held.add(path.name)
                    log.warning("training.save_total_limit %d: keeping %s, which `%s` (%s, since %s) is reading; "
                                "it is deleted at a later save once that command has ended", self.limit, path,
                                reader.command, reader.who, reader.started)
                continue
            try:
                remove_whole(path)  # none of it left under its name by a stop part-way
            except OSError as e:  # a folder made read-only: the run goes on, as HF's rotation did, but says so
                if path.name not in self.held:
                    self.held.add(path.name)
                    log.warning("training.save_total_limit %d: could not delete %s (%s); the run goes on and tries "
                                "again at its next save", self.limit, path, e.strerror or e)
                continue
            deleted.append(path)
            if path.name in self.held:
                self.held.discard(path.name)
                log.info("training.save_total_limit %d: deleted %s, no longer read", self.limit, path)
        return deleted


class AfterSave(TrainerCallback):
    """Calls `then()` after each numbered checkpoint the run saves, once it is whole: HF calls `on_save` after the save
    has written its last file, and a save cut short removes its folder (train/trainer.py, `_save_checkpoint`)."""

    def __init__(self, then: Callable[[], None]):
        self.then = then

    def on_save(self, args, state, control, **kwargs):  # noqa: D102
        self.then()


class RichProgress(TrainerCallback):
    """One progress bar: step, loss, samples/s, text and vision tokens/s; and a console line per log."""

    def __init__(self, throughput: Throughput, enabled: bool = True, metrics: tuple[str, ...] = ()):
        self.throughput, self.enabled = throughput, enabled
        self.metrics = metrics  # logged values shown after the loss terms, each with its `eval_` one (GRPO's reward)
        self.progress = None
        self.task = None
        # None until the first logged step (training.logging_steps): "loss nan" read as a run gone wrong
        self.last_loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        if not self.enabled or not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"))
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")
        self.throughput.started = time.perf_counter()
        self.throughput.samples = self.throughput.text_tokens = self.throughput.vision_tokens = 0

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102
        if not logs or not state.is_world_process_zero:
            return
        if "loss" in logs:
            self.last_loss = logs["loss"]
            self._refresh(args, state)  # HF logs after on_step_end: the bar showed the window before this one
        if shown := self.shown(logs):
            text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
            (self.progress.console.print if self.progress else print)(f"step {state.global_step}: {text}")

    def shown(self, logs: dict[str, float]) -> dict[str, float]:
        """What a log's console line shows: every loss term the model computed (training's and evaluation's), then
        `metrics` in their order, then the steps skipped as non-finite."""
        terms = set(LossTerms.names())
        first = {k: v for k, v in logs.items() if k in terms or k.removeprefix("eval_") in terms or k == "eval_loss"}
        named = {k: logs[k] for m in self.metrics for k in (m, f"eval_{m}") if k in logs}
        return first | named | ({"nan_skipped": logs["nan_skipped"]} if "nan_skipped" in logs else {})

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        self._refresh(args, state)

    def _refresh(self, args, state) -> None:  # noqa: ANN001 - HF's TrainingArguments and TrainerState
        """The bar at this step: the last logged loss and the throughput."""
        if self.progress is None:
            return
        sps, tps, vps = self.throughput.rates()
        self.progress.update(self.task, completed=state.global_step,
                             info=f"{self.loss_text(args.logging_steps)} | {sps:.2f} samples/s | {tps:.0f} text tok/s | "
                                  f"{vps:.0f} vision tok/s")

    def loss_text(self, logging_steps: float) -> str:
        """The bar's loss: the last logged one, or when the first will be (before any step is logged)."""
        if self.last_loss is None:
            return f"loss logged every {logging_steps:g} steps"
        return f"loss {self.last_loss:.4f}"

    def on_train_end(self, args, state, control, **kwargs):  # noqa: D102
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class EarlyStopping(CarriedState, TrainerCallback):
    """Stops training when `early_stopping_metric` has not improved by `min_delta` for `patience` evaluations.

    Lower is better for a metric whose name contains "loss", higher for any other (AP, accuracy). It controls
    training, so it is a callback; its stops are alarms in the run's `HealthLog` like the monitors' (train/monitors.py).
    """

    carried = ("best", "waited", "_warned")  # a resumed run stops where one that never stopped would

    def __init__(self, cfg: MonitorConfig, health: "HealthLog"):
        self.cfg, self.health = cfg, health
        self.metric = cfg.early_stopping_metric or ""
        # Every loss term the trainer logs is one, though `eval_lm_student` or `eval_grounding` names no "loss": read
        # as higher-is-better, a run that improved was stopped, and one that got worse went on
        self.lower_is_better = "loss" in self.metric or self.metric.removeprefix("eval_") in LOSS_TERM_NAMES
        self.best: tuple[int, float] | None = None
        self.waited = 0
        self._warned = False
        # Every rank runs the callback alike, so each said the same warning: the first process alone says it, as the
        # alarms are said once (train/monitors.py)
        self._first = True

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        self.take_back(state)
        self._first = state.is_world_process_zero
        if args.eval_strategy == "no" and self._first:
            health_log.warning("monitor.early_stopping_metric=%s but there is no validation set (data.val): early stopping is off",
                        self.metric)

    def _value(self, metrics: dict[str, float]) -> float | None:
        for key in (self.metric, f"eval_{self.metric}"):
            if isinstance(metrics.get(key), (int, float)):
                return float(metrics[key])
        if not self._warned:
            self._warned = True
            if self._first:
                health_log.warning("monitor.early_stopping_metric=%s is not among the evaluation metrics (%s): early "
                                   "stopping is off", self.metric, ", ".join(sorted(metrics)))
        return None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: D102
        value = self._value(metrics or {})
        if value is None or not math.isfinite(value):
            return
        step = state.global_step
        better = self.best is None or (
            value < self.best[1] - self.cfg.early_stopping_min_delta if self.lower_is_better
            else value > self.best[1] + self.cfg.early_stopping_min_delta)
        if better:
            self.best, self.waited = (step, value), 0
        else:
            self.waited += 1
        self.health.scalar("health/early_stopping_wait", self.waited, step)
        if self.waited >= self.cfg.early_stopping_patience:
            control.should_training_stop = True
            best_step, best = self.best
            self.health.alarm(step, "early_stop", self.metric, value,
                              f"early stopping: {self.metric} {value:.4g} has not improved on {best:.4g} (step {best_step}) "
                              f"by more than {self.cfg.early_stopping_min_delta:g} for {self.waited} evaluations "
                              f"(monitor.early_stopping_patience={self.cfg.early_stopping_patience}); training stops")
        self.health.flush()
