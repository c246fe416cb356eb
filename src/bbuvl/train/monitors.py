"""Training-health monitors: Trainer callbacks that raise alarms while a run goes wrong, not after.

Each monitor watches one recurring failure (docs/design.md, "Diagnostics are part of the product"):
exploding or non-finite gradients per LR group, mode collapse of the detection head (every image gets
the same boxes), over-fitting (validation loss running away from training loss), a metric that stopped
improving (early stopping, train/callbacks.py, alarms through the same log) and memory that grows step after step. Every alarm is one warning line in
the log, a scalar `alarm/<kind>` in TensorBoard (`{output_dir}/tb`, next to the trainer's own event
file) and an entry of the run's summary (`{output_dir}/health.json`, written at each save and at the end). Thresholds
come from the config's `monitor` section.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil  # a dependency of accelerate
import torch
from transformers import TrainerCallback

from bbuvl.atomic import write_text_atomic
from bbuvl.config import MonitorConfig
from bbuvl.train.all_ranks import every_rank, first_process
from bbuvl.train.callbacks import CarriedState, EarlyStopping, RunTensorBoard
from bbuvl.train.param_groups import GROUPS, group_of

log = logging.getLogger("bbuvl.health")
HEALTH_FILE = "health.json"
PROBE_SAMPLES = 4  # images in the collapse probe: enough for a spread, cheap enough to run every few steps
PROBE_CAPTION_QUERIES = 5  # queries whose first caption token is compared across the probe images


@dataclass
class Alarm:
    """One raised alarm."""

    step: int
    kind: str  # nonfinite | grad_norm | collapse | overfit | early_stop | memory
    subject: str  # what it is about (a group, "boxes", "eval_loss", "rss"): repeats are grouped by (kind, subject)
    value: float
    message: str


class HealthLog(CarriedState, TrainerCallback):
    """Collects alarms and health scalars: log lines, TensorBoard scalars, the end-of-training summary.

    A repeated alarm (same kind and subject) is logged at most once per `quiet_steps` steps; every
    occurrence still counts in the summary and is written to TensorBoard. A resumed run takes back the alarms
    up to its checkpoint (train/callbacks.py `CarriedState`): health.json and `alarm/<kind>` count on from there.
    With several processes each raises its own alarms and the first writes health.json: `gather` hands it the
    others' before each save and at the end (TensorBoard's `alarm/<kind>` counts the first process's). An alarm every
    rank raises alike is logged by the first process alone; one about a rank's own memory by that rank, naming it.
    """

    carried = ("alarms", "_last_logged", "_counts")

    def __init__(self, quiet_steps: int = 10):
        self.quiet_steps = quiet_steps
        self.alarms: list[Alarm] = []
        self.writer = None
        self.output_dir: Path | None = None
        self._last_logged: dict[str, int] = {}  # "kind:subject" (a JSON key, for the checkpoint) -> step
        self._counts: dict[str, int] = {}
        # "rank N: " when several processes train, and whether this process is the first: until training begins (and
        # sets both from its arguments), as the launcher's environment says
        self._where = f"rank {os.environ.get('RANK', '0')}: " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        self._first = first_process()

    def state(self) -> dict:  # noqa: D102
        saved = super().state()
        saved["attributes"]["alarms"] = [asdict(a) for a in self.alarms]
        return saved

    def load_state(self, attributes: dict) -> None:  # noqa: D102
        super().load_state(attributes)
        self.alarms = [Alarm(**a) for a in attributes.get("alarms", [])]

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        self.take_back(state)
        self.output_dir = Path(args.output_dir)
        self._where = f"rank {args.process_index}: " if args.world_size > 1 else ""
        self._first = args.process_index == 0
        if state.is_world_process_zero and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # The trainer's TensorBoard writer lives in the same folder: TensorBoard merges both event files.
            self.writer = SummaryWriter(log_dir=str(self.output_dir / "tb"), filename_suffix=".health")

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Write one health scalar (rank 0 only; no-op before training starts)."""
        if self.writer is not None:
            self.writer.add_scalar(tag, float(value), step)

    def alarm(self, step: int, kind: str, subject: str, value: float, message: str, local: bool = False) -> None:
        """Record an alarm: one log line (unless it repeats within `quiet_steps`), a scalar, a summary entry.

        `local`: about this process alone (its memory), not about the run every rank sees alike (the reduced
        gradients, the weights, the evaluation): its message names the rank when several train, so that `gather`
        keeps each rank's, and every rank logs its own. An alarm every rank raises alike is logged by the first
        process alone: each rank logged it, and a run under torchrun said each such alarm once a process."""
        if local:
            message = f"{self._where}{message}"
        self.alarms.append(Alarm(step, kind, subject, float(value), message))
        self._counts[kind] = self._counts.get(kind, 0) + 1
        self.scalar(f"alarm/{kind}", self._counts[kind], step)
        key = f"{kind}:{subject}"  # kinds hold no colon
        last = self._last_logged.get(key)
        if last is None or step - last >= self.quiet_steps:
            self._last_logged[key] = step
            if local or self._first:
                log.warning("health alarm [%s] step %d: %s", kind, step, message)

    def gather(self) -> None:
        """Every rank's alarms on every rank, in step order, an alarm that several raised alike once: a collective,
        every rank calls it (a no-op in one process). Only the first rank writes health.json, and an alarm another
        rank alone raised was missing from it."""
        ranks = every_rank([asdict(a) for a in self.alarms])
        if len(ranks) == 1:
            return
        seen: set[str] = set()
        merged = []
        for alarms in ranks:
            for a in alarms:
                key = json.dumps(a, sort_keys=True)  # a NaN value equals itself here, not as a float
                if key not in seen:
                    seen.add(key)
                    merged.append(Alarm(**a))
        self.alarms = sorted(merged, key=lambda a: a.step)  # stable: the first rank's first within a step

    def flush(self) -> None:
        """Push pending scalars to disk."""
        if self.writer is not None:
            self.writer.flush()

    def summary(self) -> dict[str, Any]:
        """`{kind: {count, first_step, last_step, first, last}}`: what went wrong, where to look first."""
        out: dict[str, Any] = {}
        for a in self.alarms:
            s = out.setdefault(a.kind, {"count": 0, "first_step": a.step, "first": a.message})
            s["count"] += 1
            s["last_step"], s["last"] = a.step, a.message
        return out

    def write(self, output_dir: Path) -> None:
        """Write `{output_dir}/health.json`: the summary and every alarm."""
        output_dir.mkdir(parents=True, exist_ok=True)
        report = {"summary": self.summary(), "alarms": [asdict(a) for a in self.alarms]}
        write_text_atomic(output_dir / HEALTH_FILE, json.dumps(report, ensure_ascii=False, indent=1))

    def on_save(self, args, state, control, **kwargs):  # noqa: D102
        # beside each checkpoint, which carries the same alarms: a run killed mid-way showed none until resumed
        if state.is_world_process_zero and self.output_dir is not None:
            self.write(self.output_dir)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: D102
        self.gather()  # every rank ends training here
        if state.is_world_process_zero:
            self.finish()

    def finish(self) -> None:
        """Say the alarms in one summary, write health.json and close the TensorBoard events: at the end of training,
        or where it stopped (`fit` calls it for a run the non-finite guard stopped, which HF never ends)."""
        summary = self.summary()
        if summary:
            lines = [f"  {kind}: {s['count']}x, first at step {s['first_step']}: {s['first']}" for kind, s in summary.items()]
            log.warning("training health: %d alarm(s)\n%s", len(self.alarms), "\n".join(lines))
        else:
            log.info("training health: no alarms")
        if self.output_dir is not None:
            self.write(self.output_dir)
        self.close()

    def close(self) -> None:
        """Close the TensorBoard events (their writer thread ends), writing nothing else: `finish` at the end of a
        run, or `closing_event_writers` for one that stopped on any error or a Ctrl-C."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _due(step: int, every: int) -> bool:
    return step > 0 and step % every == 0


def _norm(t: torch.Tensor) -> float:
    """The 2-norm of `t` past float32's range too (taken over `t` scaled by its largest magnitude); NaN or inf when `t`
    holds one."""
    peak = float(t.detach().abs().amax())
    if not math.isfinite(peak) or peak == 0.0:
        return peak
    return peak * float(torch.linalg.vector_norm(t.detach() / peak, dtype=torch.float32))


def sustained_over(norms: Sequence[float], limit: float, window: int) -> bool:
    """Whether more than half of the last `window` of a group's gradient norms (oldest first) are above `limit`; early in
    a run, with fewer, the steps not yet taken count as under it. A window of 1: the last norm is above it."""
    return sum(v > limit for v in norms[-window:]) > window / 2


class GradientMonitor(CarriedState, TrainerCallback):
    """Gradient and weight norms per LR group (`gn/<group>`, `wn/<group>`); alarms on large or non-finite gradients.

    A group's norm above `monitor.grad_norm_max` alarms when it stays there: on more than half of its last
    `monitor.grad_norm_window` steps. The demo's stage A clipped (to training.max_grad_norm 1) bursts of 4 steps of
    103-145 and 2 of 122-157 in a run whose median was 16 and whose loss went on falling, each an alarm telling to
    lower an LR that was fine, while a too-high LR keeps the norms up step after step (docs/design.md, "Training
    health"). The norms of the window are carried over a resume, which judges its first steps as a whole run would.

    Gradient norms are the step's, as the optimizer takes them: summed over its micro-batches and reduced over the
    ranks, read before clipping, where an explosion is still visible (the trainer calls `read_gradients` there,
    train/trainer.py). A hook after each backward read them before DDP had reduced them: one rank's gradients, not the
    step's. The non-finite guard (train/callbacks.py) decides whether the step is skipped; this monitor says which
    groups and which weights went non-finite.
    """

    carried = ("recent",)

    def __init__(self, model: torch.nn.Module, cfg: MonitorConfig, health: HealthLog):
        self.model, self.cfg, self.health = model, cfg, health
        self._groups: dict[str, list[tuple[str, torch.nn.Parameter]]] = {}
        self._read: dict[str, float] | None = None  # the step's group norms, once `read_gradients` took them
        self.recent: dict[str, list[float]] = {}  # group -> its last grad_norm_window finite norms, oldest first

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        self.take_back(state)
        self._groups = {}
        for name, p in self.model.named_parameters():
            if p.requires_grad and (g := group_of(name)) is not None:
                self._groups.setdefault(g, []).append((name, p))

    def read_gradients(self) -> None:
        """Take the step's group norms from the gradients as they are now (the trainer calls it before clipping)."""
        self._read = self.group_grad_norms()

    def group_grad_norms(self) -> dict[str, float]:
        """Gradient norm of each group with gradients now (NaN/inf when any gradient is)."""
        names = [g for g in GROUPS if any(p.grad is not None for _, p in self._groups.get(g, []))]
        if not names:
            return {}
        held = [[(n, p) for n, p in self._groups[g] if p.grad is not None] for g in names]
        flat = torch.stack([torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float32)
                            for params in held for _, p in params]).cpu().double()  # one device sync
        out, k = {}, 0
        for g, params in zip(names, held):
            # Summed in float64, each norm float32 overflowed taken again scaled: in float32 a norm past 1.8e19 read
            # inf, an alarm of non-finite gradients on a step the guard rightly took
            norms = [_norm(p.grad) if math.isinf(v) and p.grad is not None else v
                     for v, (_, p) in zip(flat[k:k + len(params)].tolist(), params)]
            out[g], k = math.sqrt(sum(v * v for v in norms)), k + len(params)
        return out

    def on_pre_optimizer_step(self, args, state, control, **kwargs):  # noqa: D102
        step = state.global_step + 1  # the step being taken
        # As the trainer handed them before clipping; where it clipped nothing (training.max_grad_norm 0: HF calls
        # no `_clip_grad_norm`), as they are now, unclipped
        norms = self._read if self._read is not None else self.group_grad_norms()
        self._read = None
        bad = {g: v for g, v in norms.items() if not math.isfinite(v)}
        if bad:
            weights = self.nonfinite_weights()
            where = f"; non-finite weights: {', '.join(weights[:5])}" + (" ..." if len(weights) > 5 else "") if weights else ""
            self.health.alarm(step, "nonfinite", ",".join(bad), float("nan"),
                              f"non-finite gradients (from the loss or the backward pass) in group(s) "
                              f"{', '.join(f'{g} ({v})' for g, v in bad.items())}{where}; the non-finite guard skips "
                              f"the step (training.max_consecutive_nan in a row stop the run)")
        limit, window = self.cfg.grad_norm_max, self.cfg.grad_norm_window
        for g, v in norms.items():
            if not math.isfinite(v):
                continue  # the non-finite alarm's, a step the guard skips
            recent = self.recent.setdefault(g, [])
            recent.append(v)
            del recent[:-window]  # a resume may have shortened the window
            if sustained_over(recent, limit, window):
                self.health.alarm(step, "grad_norm", g, v, _grad_norm_message(g, recent, limit, window, args.max_grad_norm))
        if _due(step, self.cfg.every_steps):
            for g, v in norms.items():
                self.health.scalar(f"gn/{g}", v, step)

    def nonfinite_weights(self) -> list[str]:
        """Names of trainable parameters holding NaN or inf."""
        return [n for params in self._groups.values() for n, p in params if not torch.isfinite(p.detach()).all()]

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        if not _due(state.global_step, self.cfg.every_steps):
            return
        with torch.no_grad():
            for g in GROUPS:
                params = self._groups.get(g)
                if not params:
                    continue
                norms = torch.stack([torch.linalg.vector_norm(p.detach(), dtype=torch.float32) for _, p in params])
                value = math.sqrt(sum((_norm(p) if math.isinf(v) else v) ** 2  # as the gradients' (above)
                                      for v, (_, p) in zip(norms.cpu().tolist(), params)))
                self.health.scalar(f"wn/{g}", value, state.global_step)
                # Only weights that are not finite: a norm past float32's range named none ("in group 'vision': ;")
                if not math.isfinite(value) and (names := [n for n, p in params if not torch.isfinite(p.detach()).all()]):
                    self.health.alarm(state.global_step, "nonfinite", f"weights:{g}", value,
                                      f"non-finite weights in group '{g}': {', '.join(names[:5])}"
                                      + (" ..." if len(names) > 5 else "") + "; every following step will be non-finite "
                                      "until they are restored: resume from an earlier checkpoint with a lower LR")
        self.health.flush()


def _grad_norm_message(group: str, recent: list[float], limit: float, window: int, clip: float) -> str:
    """The grad_norm alarm's line: how long the group's norm stayed above the limit, and what to lower."""
    now, clipped = recent[-1], f"before clipping to training.max_grad_norm={clip:g}"
    if window == 1:
        return (f"gradient norm of group '{group}' is {now:.4g} > monitor.grad_norm_max={limit:g} ({clipped}); lower its "
                f"LR (training.lr.{group}) or look for an outlier batch")
    over = sum(v > limit for v in recent)
    return (f"gradient norm of group '{group}' above monitor.grad_norm_max={limit:g} on {over} of its last {len(recent)} "
            f"steps (median {statistics.median(recent):.4g}, now {now:.4g}; {clipped}): it stays high, which no single "
            f"outlier batch does; lower its LR (training.lr.{group})")


class CollapseMonitor(CarriedState, TrainerCallback):
    """Mode-collapse alarm: the head's boxes stop depending on the image.

    Every `collapse_every_steps` steps the head runs (eval mode, no gradients) on the first few training
    samples. Box spread = standard deviation across the probe images of each query's box, averaged
    over queries and coordinates (below `monitor.collapse_std`, 1e-3 by default, is collapse); caption spread = the same
    for the first caption token's log-probabilities of the most confident queries (reported with it).

    A DETR-style head starts collapsed by construction (its last box layer is zero, so every image
    gets the reference boxes) and its spread grows from there, slowly: on the tiny test model (LR 1e-3)
    the box std is about 5e-5 after 3 steps and 4e-4 after 30. Early captions also converge on the
    label prior (their spread fell from 3e-3 to 6e-4 over the same steps). So the alarm fires when the box spread is
    below `collapse_std` and fell more than tenfold from its peak (diversity lost), or when boxes or
    captions are identical for every image (the head ignores its input, e.g. it gets no image features).
    """

    carried = ("peak", "history")  # the peak the fall is measured from outlives a resume
    FALL = 0.1  # below this fraction of the peak spread: diversity was lost, not yet to be gained
    IDENTICAL = 1e-7  # a spread this small is float round-off: the outputs are the same

    def __init__(self, model: Any, dataset: Any, collator: Any, cfg: MonitorConfig, health: HealthLog):
        self.model, self.dataset, self.collator, self.cfg, self.health = model, dataset, collator, cfg, health
        self.batch: dict[str, Any] | None = None
        self.peak = 0.0
        self.history: list[tuple[int, float, float]] = []  # (step, box spread, caption spread)

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        self.take_back(state)
        n = min(PROBE_SAMPLES, len(self.dataset))
        if self.model.detection_head is None or n < 2 or not state.is_world_process_zero or _zero3():
            return
        self.batch = self.collator([self.dataset[i] for i in range(n)])

    def spread(self) -> tuple[float, float]:
        """`(box spread, caption spread)` of the head on the probe batch."""
        model, head = self.model, self.model.detection_head
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                det = model.detect(self.batch.to(next(model.parameters()).device))  # boxes, objectness, query vectors
                box_spread = float(det.boxes.float().std(dim=0).mean())  # boxes [S, Q, 4]
                objectness = torch.nan_to_num(det.objectness_logits.float(), nan=-1e9).mean(dim=0)  # [Q]
                top = objectness.topk(min(PROBE_CAPTION_QUERIES, objectness.numel())).indices
                hidden = det.query_hidden[:, top]  # [S, k, D]
                first = torch.full((hidden.shape[0] * hidden.shape[1], 1), head.eos_token_id, device=hidden.device)
                logp = head.caption_logits(hidden.flatten(0, 1), first)[:, 0].float().log_softmax(-1)  # [S*k, V]
                caption_spread = float(logp.view(hidden.shape[0], hidden.shape[1], -1).std(dim=0).mean())
        finally:
            model.train(was_training)
        return box_spread, caption_spread

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        if (self.batch is None or not self.model.detection_active
                or not _due(state.global_step, self.cfg.collapse_every_steps)):
            return
        box_spread, caption_spread = self.spread()
        step = state.global_step
        self.history.append((step, box_spread, caption_spread))
        self.health.scalar("health/box_spread", box_spread, step)
        self.health.scalar("health/caption_spread", caption_spread, step)
        threshold = self.cfg.collapse_std
        fell = box_spread < threshold and box_spread < self.FALL * self.peak  # a NaN spread is the nonfinite alarm's
        identical = [name for name, v in (("boxes", box_spread), ("captions", caption_spread)) if v <= self.IDENTICAL]
        if fell or identical:
            why = (f"the {' and '.join(identical)} are identical for every image: the head ignores its input" if identical
                   else f"the box spread fell from {self.peak:.3g}")
            n = self.batch.det_grid_hw.shape[0]
            self.health.alarm(step, "collapse", "+".join(identical) or "boxes", box_spread,
                              f"mode collapse on {n} probe images: box std {box_spread:.3g} (monitor.collapse_std="
                              f"{threshold:g}), caption first-token log-prob std {caption_spread:.3g}; {why}; check the "
                              "head's LR, the matching costs and that image features reach the head (bbuvl doctor model, "
                              "bbuvl doctor features)")
        self.peak = max(self.peak, box_spread) if math.isfinite(box_spread) else self.peak


def _zero3() -> bool:
    """True under DeepSpeed ZeRO-3, where a forward on one rank alone would wait forever for the others."""
    try:
        from transformers.integrations import is_deepspeed_zero3_enabled
    except ImportError:
        return False
    return bool(is_deepspeed_zero3_enabled())


class OverfitMonitor(CarriedState, TrainerCallback):
    """Over-fitting alarm: eval loss / mean training loss since the previous evaluation above `overfit_ratio` and rising."""

    carried = ("_train", "_last_train", "ratios")

    def __init__(self, cfg: MonitorConfig, health: HealthLog):
        self.cfg, self.health = cfg, health
        self._train: list[float] = []
        self._last_train: float | None = None
        self.ratios: list[tuple[int, float]] = []

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        self.take_back(state)

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102
        value = (logs or {}).get("loss")
        if isinstance(value, (int, float)) and math.isfinite(value):
            self._train.append(float(value))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: D102
        eval_loss = (metrics or {}).get("eval_loss")
        train = sum(self._train) / len(self._train) if self._train else self._last_train
        self._last_train, self._train = train, []
        if eval_loss is None or not train or not math.isfinite(eval_loss) or train <= 0:
            return
        ratio = eval_loss / train
        step = state.global_step
        self.health.scalar("health/overfit_ratio", ratio, step)
        previous = self.ratios[-1] if self.ratios else None
        self.ratios.append((step, ratio))
        if ratio > self.cfg.overfit_ratio and previous is not None and ratio > previous[1]:
            self.health.alarm(step, "overfit", "eval_loss", ratio,
                              f"over-fitting: eval_loss {eval_loss:.4g} is {ratio:.2f}x the training loss {train:.4g} "
                              f"(> monitor.overfit_ratio={self.cfg.overfit_ratio:g}) and rising ({previous[1]:.2f}x at step "
                              f"{previous[0]}); more data, fewer epochs, lower LRs or early stopping "
                              "(monitor.early_stopping_metric=eval_loss)")
        self.health.flush()


class MemoryMonitor(TrainerCallback):
    """Memory-growth alarm: resident (and CUDA allocated) memory compared with the first step's, and at the end of each
    whole epoch with the end of the one before.

    The first step is the baseline because it allocates the optimizer state (a resumed run's first step after its
    checkpoint: this process's memory, not the stopped one's); growth after it that
    exceeds `memory_growth_mb` means something keeps references (docs/design.md, "Memory that grows": gradients or cached
    tensors). The alarm re-arms at each further multiple of the threshold. An epoch's growth is measured from one
    epoch's end to the next, so both readings are taken at the same point of the loop; the first epoch this process
    ends is the baseline, and a run stopped inside an epoch (training.max_steps) ended none. Each process alarms on its
    own memory (named by its rank when several train). Memory kept on purpose, the samples the
    dataset keeps between epochs (`data.sample_cache_mb`), is not growth: `kept_mb` says how much that is. CUDA memory
    is read on the GPU `model` is on, looked up at each sample (the trainer places it after the monitor is built);
    without a model, on the current CUDA device.
    """

    def __init__(self, cfg: MonitorConfig, health: HealthLog, kept_mb: Callable[[], float] | None = None,
                 model: torch.nn.Module | None = None):
        self.cfg, self.health, self.kept_mb, self.model = cfg, health, kept_mb, model
        self.baseline: dict[str, float] | None = None
        self.baseline_step = 0  # the first step this process took: 1, or the first after the checkpoint resumed
        self.epoch_end: tuple[int, dict[str, float]] | None = None  # (epoch, memory) at the end of the last whole one
        self.alarmed_at: dict[str, int] = {}
        self.samples: list[tuple[int, dict[str, float]]] = []

    def _now(self) -> dict[str, float]:
        param = next(self.model.parameters(), None) if self.model is not None else None
        now = process_memory_mb(param.device if param is not None else None)
        if self.kept_mb is not None:
            now["rss"] -= self.kept_mb()
        return now

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        now = self._now()
        step = state.global_step
        if self.baseline is None:
            self.baseline, self.baseline_step = now, step
            return
        if _due(step, self.cfg.every_steps):
            self.samples.append((step, now))
            for k, v in now.items():
                self.health.scalar(f"mem/{k}_mb", v, step)
        for k, v in now.items():
            growth = v - self.baseline.get(k, v)
            level = int(growth // self.cfg.memory_growth_mb)
            if level >= 1 and level > self.alarmed_at.get(k, 0):
                self.alarmed_at[k] = level
                self.health.alarm(step, "memory", k, growth,
                                  f"{_MEMORY_NAMES[k]} grew {growth:.0f} MB since step {self.baseline_step} ({self.baseline[k]:.0f} -> {v:.0f} MB; "
                                  f"monitor.memory_growth_mb={self.cfg.memory_growth_mb:g}): something keeps tensors alive "
                                  "across steps (lists of outputs, un-detached losses, caches)", local=True)

    def on_epoch_end(self, args, state, control, **kwargs):  # noqa: D102
        epoch = ended_epoch(state.epoch)
        if epoch is None:
            return  # stopped inside an epoch: it ended none, and the per-step alarm has measured its steps
        now = self._now()
        if self.epoch_end is not None:
            before, then = self.epoch_end
            for k, v in now.items():
                growth = v - then.get(k, v)
                if growth > self.cfg.memory_growth_mb:
                    self.health.alarm(state.global_step, "memory", f"epoch:{k}", growth,
                                      f"{_MEMORY_NAMES[k]} grew {growth:.0f} MB during epoch {epoch} ({then[k]:.0f} MB at "
                                      f"the end of epoch {before} -> {v:.0f} MB at the end of epoch {epoch}): buffers "
                                      "not released between epochs", local=True)
        self.epoch_end = (epoch, now)


def ended_epoch(progress: float | None) -> int | None:
    """The epoch (0-based, as train/callbacks.py `EpochCallback` counts them) that HF's `state.epoch` says just ended,
    or None when it stands inside one (a run stopped by training.max_steps: 0.75)."""
    if not progress or abs(progress - round(progress)) > 1e-6:
        return None
    return round(progress) - 1


def cuda_memory_device(device: torch.device | str | None) -> torch.device | None:
    """The CUDA device whose memory a process on `device` holds: that GPU, the current one for None, none off CUDA."""
    if device is None:
        return torch.device("cuda")  # memory_allocated's own default: the current device
    device = torch.device(device)
    return device if device.type == "cuda" else None


def process_memory_mb(device: torch.device | str | None = None) -> dict[str, float]:
    """`{"rss": resident MB}` of this process, plus `"cuda_allocated"` (MB of tensors on `device`'s GPU) once CUDA runs."""
    out = {"rss": psutil.Process().memory_info().rss / 2**20}
    cuda = cuda_memory_device(device)
    # Read on the current device only, a model on cuda:1 (`doctor memory --device cuda:1`, a second GPU's run) read
    # 0 MB there, and a leak on it went unseen.
    if cuda is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_allocated"] = torch.cuda.memory_allocated(cuda) / 2**20
    return out


_MEMORY_NAMES = {"rss": "resident memory", "cuda_allocated": "CUDA allocated memory"}


def _cache_mb(dataset: Any) -> Callable[[], float] | None:
    """What the dataset's sample cache holds, in MB, read when called; None without one."""
    cache = getattr(dataset, "cache", None)
    return None if cache is None else (lambda: cache.held / 2**20)


def training_health(model: Any, train_dataset: Any, collator: Any, cfg: MonitorConfig) -> list[TrainerCallback]:
    """The monitors a config asks for, `HealthLog` first; with `monitor.enabled` false, early stopping alone.

    `collator` is the run's: the collapse probe is collated like training batches, by a fresh padded
    collator with the same token ids (so the probe never counts in the run's budget statistics).
    """
    from bbuvl.encode.collate import PaddedCollator

    health = HealthLog(quiet_steps=cfg.every_steps)
    if not cfg.enabled:
        # Early stopping ends the run, it is no alarm: turning the alarms off dropped it without a word, and a resume
        # may change monitor.enabled (docs/resume.md). Its stop is still said in the log; no health.json is written.
        return [EarlyStopping(cfg, health)] if cfg.early_stopping_metric else []
    probe_collator = PaddedCollator(collator.pad_token_id, collator.image_token_id, merge=collator.merge)
    callbacks: list[TrainerCallback] = [
        health,
        GradientMonitor(model, cfg, health),
        CollapseMonitor(model, train_dataset, probe_collator, cfg, health),
        OverfitMonitor(cfg, health),
        MemoryMonitor(cfg, health, kept_mb=_cache_mb(train_dataset), model=model),
    ]
    if cfg.early_stopping_metric:
        callbacks.append(EarlyStopping(cfg, health))
    return callbacks


def health_log(callbacks: list[TrainerCallback]) -> HealthLog | None:
    """The run's `HealthLog` among a trainer's callbacks (`trainer.callback_handler.callbacks`); None without monitors."""
    return next((c for c in callbacks if isinstance(c, HealthLog)), None)


@contextmanager
def closing_event_writers(callbacks: list[TrainerCallback]) -> Iterator[None]:
    """Close the TensorBoard writers of a trainer's callbacks (HF's, `RunTensorBoard`, and `HealthLog`'s) when the
    block ends, however it ends. HF closes them only in `on_train_end`, which a run stopped by an error or a Ctrl-C
    never reaches: each such run in one process (a notebook) left their two writer threads running. A run that ended
    has closed them already, so nothing more is written."""
    try:
        yield
    finally:
        for callback in callbacks:
            if isinstance(callback, (RunTensorBoard, HealthLog)):
                try:
                    callback.close()
                except OSError as e:  # its last events unwritten (a full disk): the error that ended the run stays it
                    log.warning("%s; the run's last TensorBoard events may be missing from its tb/", e)


def health_summary(callbacks: list[TrainerCallback]) -> dict[str, Any]:
    """The alarm summary of a trainer's callbacks (`trainer.callback_handler.callbacks`); {} without monitors."""
    return next((c.summary() for c in callbacks if isinstance(c, HealthLog)), {})
