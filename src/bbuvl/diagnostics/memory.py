"""Is memory flat? Sample process memory over repeated work and fit its trend (docs/design.md, "Memory that grows").

A leak shows as a steady slope after warm-up (allocator pools, caches and lazy imports fill the
first iterations), so the verdict comes from a least-squares line over the post-warm-up samples:
growth along that line above a tolerance is a leak, anything else is noise. Before each sample the
C heap's free pages go back to the OS (glibc `malloc_trim`): otherwise a leak can hide for hundreds
of iterations in memory the process freed earlier, which the allocator keeps resident and reuses.
"""

from __future__ import annotations

import ctypes
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from bbuvl.train.monitors import process_memory_mb

if TYPE_CHECKING:
    from PIL import Image

    from bbuvl.infer.predictor import Predictor

DEFAULT_TOLERANCE_MB = 16.0


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # musl and others: no malloc_trim, RSS keeps the allocator's cache
        return None


_LIBC = _glibc()


def release_free_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc; a no-op elsewhere), so RSS follows live memory."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


@dataclass
class Trend:
    """A least-squares line through memory samples after warm-up."""

    slope_mb_per_iter: float
    growth_mb: float  # along the line, over the fitted window
    verdict: str  # "flat" or "leaking"

    @property
    def per_1000(self) -> float:
        """Fitted growth per 1000 iterations (MB)."""
        return self.slope_mb_per_iter * 1000


def memory_trend(values: list[float], warmup: int, tolerance_mb: float = DEFAULT_TOLERANCE_MB) -> Trend:
    """Fit `values[warmup:]` (MB per iteration); leaking when the fitted growth over them exceeds `tolerance_mb`."""
    window = torch.tensor(values[warmup:], dtype=torch.float64)
    if window.numel() < 3:
        raise ValueError(f"need at least 3 samples after {warmup} warm-up iterations to fit a trend, got {window.numel()}")
    x = torch.arange(window.numel(), dtype=torch.float64)
    xc = x - x.mean()
    slope = float((xc * (window - window.mean())).sum() / xc.square().sum())
    growth = slope * (window.numel() - 1)
    return Trend(slope, growth, "leaking" if growth > tolerance_mb else "flat")


@dataclass
class MemoryTrace:
    """Memory sampled after each of `n` iterations of the same work."""

    samples: dict[str, list[float]] = field(default_factory=dict)  # metric ("rss", "cuda_allocated") -> MB per iteration
    warmup: int = 0
    seconds: float = 0.0
    tolerance_mb: float = DEFAULT_TOLERANCE_MB

    def trends(self) -> dict[str, Trend]:
        """The trend of every sampled metric."""
        return {k: memory_trend(v, self.warmup, self.tolerance_mb) for k, v in self.samples.items()}

    @property
    def verdict(self) -> str:
        """"leaking" when any metric leaks, else "flat"."""
        return "leaking" if any(t.verdict == "leaking" for t in self.trends().values()) else "flat"


def measure_memory(
    step: Callable[[int], object],
    n: int,
    warmup: int | None = None,
    tolerance_mb: float = DEFAULT_TOLERANCE_MB,
    on_progress: Callable[[int, int], None] | None = None,
    device: torch.device | str | None = None,
) -> MemoryTrace:
    """Run `step(i)` `n` times, sampling memory after each (CUDA memory on `device`'s GPU); its return value is dropped
    at once, as a caller's would be."""
    warmup = max(2, n // 10) if warmup is None else warmup
    if n < warmup + 3:
        raise ValueError(f"--n {n} is too small: need at least {warmup + 3} iterations ({warmup} of them warm-up)")
    trace = MemoryTrace(warmup=warmup, tolerance_mb=tolerance_mb)
    start = time.perf_counter()
    for i in range(n):
        step(i)
        release_free_heap()
        for k, v in process_memory_mb(device).items():
            trace.samples.setdefault(k, []).append(v)
        if on_progress:
            on_progress(i + 1, n)
    trace.seconds = time.perf_counter() - start
    return trace


def inference_memory(
    predictor: "Predictor",
    images: Sequence["str | Image.Image"],
    n: int,
    mode: str = "head",
    warmup: int | None = None,
    tolerance_mb: float = DEFAULT_TOLERANCE_MB,
    on_progress: Callable[[int, int], None] | None = None,
) -> MemoryTrace:
    """Predict the same images `n` times in `mode` and sample memory after each (`bbuvl doctor memory`)."""
    return measure_memory(lambda i: predictor.predict(images, mode), n, warmup, tolerance_mb, on_progress,
                          predictor.device)
