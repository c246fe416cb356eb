"""Dynamic batching: requests wait in a bounded queue and one worker thread runs them in batches.

The worker takes the first waiting job, then keeps gathering until it holds `max_batch` images or
`max_wait_ms` have passed since it took that job (or since the job arrived, if the worker was idle), and runs
them in one call of `run_batch` (one forward pass). The window opens when the worker is free, not when the
first job arrived: under steady load the callers the last batch just answered come back within it, and batches
stay full instead of alternating between a few and the rest (measured with bench/serve_load.py: mean batch 4.6
-> 5.5 with 8 clients, docs/serving.md).
Jobs of different kinds (modes) never share a call. When the queue is full, `submit` refuses at once
(the route answers 503 with Retry-After) rather than building a backlog nobody will wait for; a job whose
caller has given up (timeout) before its batch starts is dropped, not computed.

The model runs in this one thread, never in the event loop, so health checks and metrics keep answering
while a batch computes.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from bbuvl.serve.errors import ApiError

logger = logging.getLogger(__name__)


@dataclass
class Job:
    """One image waiting for the model, and where its answer goes."""

    payload: Any
    kind: str
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)
    started: float = 0.0  # when its batch began
    batch_size: int = 0
    done: Callable[[], None] | None = None  # called once the batcher is finished with the payload (pixels.py)

    def finish(self) -> None:
        """Tell `done` the batcher holds the payload no longer: refused, dropped or computed."""
        if self.done is not None:
            self.done()

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        """Hand the answer (or the error) to the waiting request, from any thread."""

        def settle() -> None:
            if self.future.done():  # the caller timed out and went away
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(settle)


RunBatch = Callable[[str, Sequence[Any]], Sequence[Any]]


class Batcher:
    """A bounded queue of jobs and the worker thread that runs them, `max_batch` at a time."""

    def __init__(self, run_batch: RunBatch, max_batch: int = 8, max_wait_ms: float = 25.0, queue_size: int = 64,
                 on_batch: Callable[[int, float], None] | None = None, on_depth: Callable[[int], None] | None = None):
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0:
            raise ValueError(f"need max_batch >= 1, queue_size >= 1, max_wait_ms >= 0; got {max_batch}, {queue_size}, {max_wait_ms}")
        self.run_batch, self.max_batch, self.max_wait = run_batch, max_batch, max_wait_ms / 1000.0
        self.queue_size = queue_size
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._held: list[Job] = []  # gathered but of another kind than the batch being built: first in the next one
        self._on_batch, self._on_depth = on_batch, on_depth
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stop_seen = False

    # --- the request side --------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Jobs waiting (not yet in a running batch)."""
        return self._queue.qsize() + len(self._held)

    def _waiting(self) -> int:
        """Jobs waiting whose callers still await them: those queued, and those the worker set aside for a batch of
        their kind (`_held`), which the queue no longer counts."""
        return self._queue.qsize() + sum(not job.future.cancelled() for job in list(self._held))

    @property
    def full(self) -> bool:
        """True when a new job would be refused (jobs whose callers are gone dropped first)."""
        return self._waiting() >= self.queue_size and (self.purge() == 0 or self._waiting() >= self.queue_size)

    def purge(self) -> int:
        """Drop the queued jobs whose callers have gone (left, or past their deadline): how many. From any thread."""
        # The worker drops them only as it reaches them, and while it computes a long batch they held places in the
        # queue (and their photos' pixels): clients that left got live ones answered 503 (docs/serving.md)
        with self._queue.mutex:
            waiting = self._queue.queue
            dead = [job for job in waiting if job is not None and job.future.cancelled()]
            if dead:
                live = [job for job in waiting if job is None or not job.future.cancelled()]
                waiting.clear()
                waiting.extend(live)
                self._queue.unfinished_tasks -= len(dead)
                self._queue.not_full.notify(len(dead))
        for job in dead:
            job.finish()
        return len(dead)

    @property
    def alive(self) -> bool:
        """True while the worker thread runs."""
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def submit(self, payload: Any, kind: str, done: Callable[[], None] | None = None) -> Job:
        """Queue one image; ApiError 503 (with Retry-After) when the queue is full or the server is stopping. `done` is
        called once the batcher no longer holds `payload` (refused, dropped as its caller gave up, or computed)."""
        loop = asyncio.get_running_loop()
        job = Job(payload, kind, loop.create_future(), loop, done=done)
        if not self.alive:
            job.finish()
            raise ApiError(503, "not_ready", "the server is starting or stopping", {"Retry-After": "1"})
        try:
            # Jobs set aside for a batch of their kind count too: gathering a batch of one kind takes every job of
            # the other out of the queue, so a chat request's place was free again while a detect batch gathered, and
            # --queue-size 4 held 20 photos (docs/serving.md, "Dynamic batching")
            if self.full:
                raise queue.Full
            self._queue.put_nowait(job)
        except queue.Full:
            job.finish()
            raise ApiError(503, "queue_full", f"all {self.queue_size} places in the queue are taken; retry shortly",
                           {"Retry-After": "1"}) from None
        self._report_depth()
        return job

    async def run(self, payload: Any, kind: str, timeout_s: float | None,
                  done: Callable[[], None] | None = None) -> tuple[Any, Job]:
        """Queue one image and wait for its result; ApiError 504 after `timeout_s` (None: the caller's own deadline).
        Cancelled (its caller gone or past its deadline), the image is dropped unless its batch has begun."""
        job = self.submit(payload, kind, done)
        try:
            # On timeout wait_for cancels the future: the worker then skips the job if its batch has not started.
            result = await asyncio.wait_for(job.future, timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no answer within {timeout_s:g} s (queue depth {self.depth})") from None
        return result, job

    # --- the worker side ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread."""
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="bbuvl-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish what is queued, then stop the worker (new jobs are refused from now on)."""
        if self._thread is None:
            return
        self._stopping = True
        self._queue.put(None)  # wakes the worker; it drains everything queued before it
        self._thread.join(timeout_s)
        self._thread = None

    def _report_depth(self) -> None:
        if self._on_depth is not None:
            self._on_depth(self.depth)

    def _next(self, block: bool) -> Job | None:
        """The next live job (held ones first), None at the stop marker; queue.Empty when not `block` and none waits."""
        while True:
            job = self._held.pop(0) if self._held else self._queue.get() if block else self._queue.get_nowait()
            if job is None or not job.future.cancelled():
                return job
            job.finish()

    def _gather(self, first: Job) -> list[Job]:
        """`first` and every job of its kind arriving within `max_wait` of now (or of its arrival), up to `max_batch`."""
        batch = [first]
        held, self._held = self._held, []
        for job in held:  # jobs set aside for another batch's kind come first, in arrival order
            if job.future.cancelled():
                job.finish()
            else:
                (batch if job.kind == first.kind and len(batch) < self.max_batch else self._held).append(job)
        deadline = max(first.enqueued, time.perf_counter()) + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._stop_seen = True
                break
            if job.future.cancelled():
                job.finish()
                continue
            if job.kind != first.kind:
                self._held.append(job)
                continue
            batch.append(job)
        return batch

    def _work(self) -> None:
        self._stop_seen = False
        while True:
            try:
                # After the stop marker, whatever is still queued (or slipped in beside it) is answered, then the worker ends.
                first = self._next(block=not self._stop_seen)
            except queue.Empty:
                return
            if first is None:
                self._stop_seen = True
                continue
            batch = self._gather(first)
            self._report_depth()
            self._execute(batch)
            # The loop's names would keep the last batch's photos (their frames and encoded inputs) alive while the
            # worker waits for the next request, however long the server stays idle
            del first, batch

    def _execute(self, batch: list[Job]) -> None:
        start = time.perf_counter()
        for job in batch:
            job.started, job.batch_size = start, len(batch)
        try:
            results: Sequence[Any] = self.run_batch(batch[0].kind, [job.payload for job in batch])
        except Exception as e:  # one failing batch must not stop the worker
            logger.exception("batch of %d failed", len(batch))
            results = [e] * len(batch)
        if self._on_batch is not None:  # counted before anyone is answered: a caller that reads /metrics next sees it
            self._on_batch(len(batch), time.perf_counter() - start)
        for job, result in zip(batch, results):  # a result may be one photo's own error
            job.finish()  # first: a caller answered next asks for what its photo held, given back
            job.resolve(error=result) if isinstance(result, BaseException) else job.resolve(result)
