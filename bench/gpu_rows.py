"""bench/gpu.py's measurements: training steps through the project's trainer, prediction through its Predictor.

A training row is `build_run` + `make_trainer` + `Trainer.train` for a few optimizer steps, exactly as
`bbuvl train` runs them (the config's batch, accumulation, precision, collator and vision-token budget), timed
between optimizer steps after warm-up. A prediction row is `Predictor.predict_each` on dense photos.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from gpu_flops import ModelShape, SampleCounts, training_flops, training_multipliers
from transformers import LogitsProcessor, TrainerCallback

from bbuvl.config import Config
from bbuvl.data.schema import ImageRecord
from bbuvl.encode.chat import format_answer
from bbuvl.infer.predictor import Predictor
from bbuvl.model.vlm import core_model
from bbuvl.train.trainer import Run, build_run, make_trainer

GB = 2**30


class PeakMemory:
    """Peak memory of this process since `reset`: CUDA tensors on a GPU, resident set on a CPU (Linux)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def reset(self) -> None:
        """Start a new peak."""
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            return
        try:  # "5" resets the resident-set high-water mark (proc(5), clear_refs)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def read(self) -> dict[str, float | None]:
        """`{"peak_gb", "reserved_gb"}` (reserved: what the CUDA allocator held, None on a CPU)."""
        if self.cuda:
            return {"peak_gb": torch.cuda.max_memory_allocated() / GB, "reserved_gb": torch.cuda.max_memory_reserved() / GB}
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return {"peak_gb": int(line.split()[1]) * 1024 / GB, "reserved_gb": None}
        except OSError:
            pass
        return {"peak_gb": None, "reserved_gb": None}


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so a clock reading covers it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class StepClock(TrainerCallback):
    """Time and the trainer's token counters at the start of training and at the end of every optimizer step; no checkpoints."""

    def __init__(self, device: str):
        self.device = device
        self.throughput: Any = None  # the trainer's Throughput, set once the trainer exists
        self.marks: list[tuple[float, int, int, int]] = []

    def _mark(self) -> None:
        synchronize(self.device)
        t = self.throughput
        self.marks.append((time.perf_counter(), t.samples, t.text_tokens, t.vision_tokens))

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: D102
        self._mark()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        self._mark()
        # HF saves a checkpoint after the last step; a benchmark keeps none, and gigabytes written are not a step.
        control.should_save = False
        return control


class StepProfile(TrainerCallback):
    """torch.profiler over one optimizer step (`step`, 1-based): which operators took that step's time, and how many
    attention calls it made (docs/gpu.md, "Reading the output")."""

    def __init__(self, device: str, step: int, top: int = 12):
        self.device, self.step, self.top = device, step, top
        self.profiler: torch.profiler.profile | None = None
        self.summary: dict[str, Any] | None = None

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: D102
        if state.global_step + 1 == self.step:
            synchronize(self.device)
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.startswith("cuda"):
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.__enter__()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        if self.profiler is not None and state.global_step == self.step:
            synchronize(self.device)
            self.profiler.__exit__(None, None, None)
            self.summary = profile_summary(self.profiler.key_averages(), self.device.startswith("cuda"), self.top)
            self.profiler = None


def profile_summary(events: Any, device_time: bool, top: int) -> dict[str, Any]:
    """The `top` operators of profiled `events` by self time (the device's on a GPU, else the CPU's), the totals, and
    the attention calls (scaled_dot_product_attention: one per window or image in the vision towers under SDPA)."""
    key = "self_device_time_total" if device_time else "self_cpu_time_total"
    ranked = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:top]
    return {"sorted_by": key, "total_ms": sum(getattr(e, key) for e in events) / 1e3,
            "cpu_total_ms": sum(e.self_cpu_time_total for e in events) / 1e3,
            "attention_calls": sum(e.count for e in events if e.key == "aten::scaled_dot_product_attention"),
            "ops": [{"name": e.key, "calls": e.count, "self_ms": getattr(e, key) / 1e3} for e in ranked]}


@dataclass(frozen=True)
class TrainVariant:
    """One training row: what is trained, with what, laid out how."""

    tuning: str  # "full" | "lora"
    head: bool
    layout: str  # "padded" | "packed"
    checkpointing: bool

    def overrides(self, packed_attention: str | None) -> list[str]:
        """Config overrides selecting this variant (`packed_attention`: flash-attention for packed rows, if any)."""
        out = [f"model.lora.enabled={str(self.tuning == 'lora').lower()}",
               f"detection.enabled={str(self.head).lower()}", f"data.collator={self.layout}",
               f"training.gradient_checkpointing={str(self.checkpointing).lower()}"]
        if self.layout == "packed" and packed_attention:
            out.append(f"model.attn_implementation={packed_attention}")
        return out


def sample_counts(run: Run, n: int) -> list[SampleCounts]:
    """Sizes of the first `n` samples of a run's training set (teacher turns drawn as training draws them)."""
    return [SampleCounts.of(run.train_dataset[i]) for i in range(min(n, len(run.train_dataset)))]


def release() -> None:
    """Give the memory of dropped objects back before the next row."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_training(cfg: Config, device: str, warmup: int, counts_cache: list[SampleCounts],
                     peak_tflops: float | None, profile: bool = False) -> dict[str, Any]:
    """Train `cfg` for its `max_steps` (warm-up + measured, + 1 profiled when `profile`) and measure the steps after
    `warmup`; the profiled step, the last, is not timed (the profiler slows it)."""
    memory = PeakMemory(device)
    memory.reset()
    run = build_run(cfg)
    core = core_model(run.model.vlm)
    if not counts_cache:
        counts_cache.extend(sample_counts(run, 32))
    flops_per_sample = training_flops(ModelShape.of(core), training_multipliers(core), counts_cache) / len(counts_cache)
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    clock = StepClock(device)
    profiler = StepProfile(device, cfg.training.max_steps) if profile else None
    trainer = make_trainer(run, progress=False, callbacks=[clock] + ([profiler] if profiler else []))
    clock.throughput = trainer.throughput
    trainer.train()
    marks = clock.marks[warmup:len(clock.marks) - (1 if profile else 0)]
    ran = len(clock.marks) - 1
    row: dict[str, Any] = {"attention": core.config._attn_implementation, "trainable_params": trainable,
                           "dropped_over_budget": trainer.budget_dropped, **memory.read()}
    if profiler is not None:
        row["profile"] = profiler.summary
    del trainer, run, core, clock
    release()
    if len(marks) < 2:
        raise RuntimeError(f"only {ran} steps ran; nothing left to measure after {warmup} warm-up")
    (t0, s0, x0, v0), (t1, s1, x1, v1) = marks[0], marks[-1]
    steps, seconds = len(marks) - 1, t1 - t0
    samples = s1 - s0
    row.update(steps=steps, step_s=seconds / steps, photos_per_s=samples / seconds,
               tokens_per_s=(x1 - x0 + v1 - v0) / seconds, vision_tokens_per_s=(v1 - v0) / seconds,
               tflops_per_s=flops_per_sample * samples / seconds / 1e12)
    row["mfu"] = row["tflops_per_s"] / peak_tflops if peak_tflops else None
    return row


class FollowAnswer(LogitsProcessor):
    """Greedy decoding writes `target` (token ids ending with the end-of-turn token), then the grammar, if any, runs.

    A randomly initialised model answers noise of any length; this makes each row decode a dense answer of
    known length, the workload being measured. It raises the target token above every other one (one indexed
    write per step) before the answer grammar masks what it does not allow, so the grammar still does its full
    work on every step.
    """

    def __init__(self, target: list[int], grammar: LogitsProcessor | None):
        self.target, self.grammar = target, grammar
        self.start: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.start is None:
            self.start = input_ids.shape[1]
        token = self.target[min(input_ids.shape[1] - self.start, len(self.target) - 1)]
        scores[:, token] = scores.max(dim=-1).values + 10.0
        return self.grammar(input_ids, scores) if self.grammar is not None else scores


class DenseAnswerPredictor(Predictor):
    """The project's Predictor, its generate mode steered to write a given dense answer (see FollowAnswer)."""

    target: list[int]  # the dense answer's token ids, end-of-turn included (set by prediction_setup)

    def answer_constraint(self, prepared, constrained, max_new_tokens):  # noqa: D102
        return FollowAnswer(self.target, super().answer_constraint(prepared, constrained, max_new_tokens))


@dataclass(frozen=True)
class PredictVariant:
    """One prediction row."""

    mode: str  # "head" | "name" | "generate"
    grammar: bool
    batch: int


def prediction_setup(cfg: Config, device: str, record: ImageRecord, photo: Path, objects: int) -> dict[str, Any]:
    """A Predictor on a freshly built run (head on), the dense photo prepared, and the objectness threshold
    at which the head keeps `objects` boxes of it."""
    run = build_run(cfg)
    model = run.model.to(device).eval()
    predictor = DenseAnswerPredictor(model, run.processor, run.contract, run.prompt, run.cfg, device)
    tok = run.processor.tokenizer
    predictor.target = (tok.encode(format_answer(record, run.contract), add_special_tokens=False)
                        + [tok.convert_tokens_to_ids("<|im_end|>")])
    prepared = predictor.encode(predictor.prepare(photo))
    with torch.inference_mode():
        det = model.detect(predictor.collator([prepared.sample]).to(device))
    scores = det.objectness_logits.float().sigmoid()[0].sort(descending=True).values.tolist()
    # Midway between the k-th and the next score: a batch of 8 computes the same photo's scores a rounding error
    # apart from a batch of 1, and a threshold at the k-th score itself would then keep k - 1 or k + 1.
    k = min(objects, len(scores))
    threshold = (scores[k - 1] + scores[k]) / 2 if k < len(scores) else scores[-1] / 2
    return {"run": run, "predictor": predictor, "prepared": prepared, "threshold": threshold}


def measure_prediction(setup: dict[str, Any], v: PredictVariant, device: str, calls: int, warmup: int) -> dict[str, Any]:
    """Photos per second of `calls` batches of `v.batch` copies of the dense photo, after `warmup` batches."""
    predictor: DenseAnswerPredictor = setup["predictor"]
    photos = [setup["prepared"]] * v.batch
    kw: dict[str, Any] = {"constrained": v.grammar}
    if v.mode in ("head", "name"):
        kw["objectness_threshold"] = setup["threshold"]
    else:
        kw["max_new_tokens"] = len(predictor.target) + 8
    options = predictor.options(**kw)

    def run_once() -> list:
        found = predictor.predict_each(photos, v.mode, options)
        for r in found:
            if isinstance(r, Exception):
                raise r
        return found

    memory = PeakMemory(device)
    memory.reset()
    for _ in range(warmup):
        run_once()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        results = run_once()
    synchronize(device)
    seconds = time.perf_counter() - t0
    objects = sum(len(r.objects) for r in results) / len(results)
    return {"photos_per_s": calls * v.batch / seconds, "s_per_batch": seconds / calls, "objects_per_photo": objects,
            "answer_tokens": len(predictor.target) if v.mode == "generate" else None,
            "errors": sum(r.error is not None for r in results), **memory.read()}
