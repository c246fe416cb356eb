"""One photo from its request's body to its answer: parsed, decoded and prepared on the decoding threads, computed in
a batch by the worker, all within the request's `--timeout`; the full-size pixels a photo keeps while it waits are
counted against `--max-waiting-mp` (pixels.py). docs/serving.md, "Dynamic batching" and "Bad input"."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Executor
from typing import Any, Callable

from bbuvl.serve.batching import Batcher
from bbuvl.serve.engine import Answer, Engine, Photo
from bbuvl.serve.errors import ApiError
from bbuvl.serve.images import decode_upload
from bbuvl.serve.metrics import ServeMetrics
from bbuvl.serve.pixels import Held, PixelBudget

Ready = tuple[Photo, "Held | None", dict[str, float]]  # a photo, its share of the pixel budget, its timings


class _Late(Exception):
    """The request was answered (504, or its client left) before its photo was decoded: the rest is not done."""


class Answering:
    """Answers for photos of one engine: `await answering(extract, mode)`."""

    def __init__(self, engine: Engine, batcher: Batcher, decoders: Executor, pixel_limit: int, timeout_s: float,
                 pixels: PixelBudget | None, metrics: ServeMetrics):
        self.engine, self.batcher, self.decoders = engine, batcher, decoders
        self.pixel_limit, self.timeout_s, self.pixels, self.metrics = pixel_limit, timeout_s, pixels, metrics

    async def __call__(self, extract: Callable[[], bytes | memoryview], mode: str) -> tuple[Answer, dict[str, Any]]:
        """The answer for the image `extract` gets out of a body, and its timings; ApiError 504 past `timeout_s`,
        counted from now (the body is in): its decoding included, which held a slow-to-decode photo past it before."""
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                photo, held, before = await self._prepare(extract)
                try:
                    result, job = await self.batcher.run(photo, mode, None, held.release if held is not None else None)
                except (RuntimeError, ValueError) as e:  # the model failed on this photo, alone: the server goes on
                    raise ApiError(500, "inference_failed", f"{type(e).__name__}: {e}") from None
                except asyncio.CancelledError:  # the deadline, or the client gone: a decode it is in may stop (engine.py)
                    photo.given_up.set()
                    raise
        except TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {self.timeout_s:g} s (--timeout; queue depth "
                           f"{self.batcher.depth})") from None
        self.metrics.tokens.labels("prompt", mode).inc(result.prompt_tokens)
        self.metrics.tokens.labels("completion", mode).inc(result.completion_tokens)
        timing = {**before, "queue": round((job.started - job.enqueued) * 1000, 2), **result.timing_ms,
                  "total": round((time.perf_counter() - t0) * 1000, 2), "batch_size": job.batch_size}
        return result, timing

    async def _prepare(self, extract: Callable[[], bytes | memoryview]) -> Ready:
        """`_decode_and_prepare` on a decoding thread; cancelled (the deadline, a client gone), the thread skips what it
        has not begun, and gives back the pixels of a photo it finishes for nobody."""
        late = threading.Event()
        # Decoding, resizing and encoding happen on the decoders' threads, while the worker computes the previous
        # batch: the worker's own thread does only what gains from batching (docs/serving.md). Shielded: a thread
        # cannot be stopped mid-decode, and what it returns must still be given back.
        work = asyncio.get_running_loop().run_in_executor(self.decoders, self._decode_and_prepare, extract, late)
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            late.set()
            work.add_done_callback(_give_back)
            raise

    def _decode_and_prepare(self, extract: Callable[[], bytes | memoryview], late: threading.Event) -> Ready:
        """The photo ready for a batch, its share of the pixel budget (None without one) and its timings."""
        held: list[Held] = []

        def on_size(w: int, h: int) -> None:
            if self.pixels is None:
                return
            try:
                held.append(self.pixels.take(w * h))
            except ApiError as e:
                # photos whose callers are gone may still hold pixels in the queue: theirs are given back first
                if e.status != 503 or not self.batcher.purge():
                    raise
                held.append(self.pixels.take(w * h))

        try:
            if late.is_set():
                raise _Late
            data = extract()
            if late.is_set():
                raise _Late
            t0 = time.perf_counter()
            upload = decode_upload(data, self.pixel_limit, on_size)
            t1 = time.perf_counter()
            if late.is_set():
                raise _Late
            try:
                photo = self.engine.prepare(upload.image, upload.size, upload.orientation)
            except (RuntimeError, ValueError) as e:  # the processor refused this photo: its own 500, as in a batch
                raise ApiError(500, "inference_failed", f"{type(e).__name__}: {e}") from None
            timing = {"decode": round((t1 - t0) * 1000, 2), "prepare": round((time.perf_counter() - t1) * 1000, 2)}
            return photo, held[0] if held else None, timing
        except BaseException:
            for h in held:
                h.release()
            raise


def _give_back(work: asyncio.Future) -> None:
    """Give back the pixels of a photo prepared for a request that is gone."""
    if not work.cancelled() and work.exception() is None:
        held = work.result()[1]
        if held is not None:
            held.release()
