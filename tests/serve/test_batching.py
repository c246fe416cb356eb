"""The batcher on its own: gathering up to max_batch, kinds kept apart, a bounded queue, draining on stop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bbuvl.serve.batching import Batcher
from bbuvl.serve.errors import ApiError


class Gate:
    """A batch function that records its batches and waits for `open` before answering."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.entered = threading.Event()
        self.open = threading.Event()

    def __call__(self, kind: str, items: list[int]) -> list[int]:
        self.batches.append((kind, list(items)))
        self.entered.set()
        self.open.wait(10)
        return [i * 10 for i in items]


def test_concurrent_jobs_are_gathered_into_batches_of_at_most_max_batch():
    gate = Gate()
    gate.open.set()
    batcher = Batcher(gate, max_batch=3, max_wait_ms=200, queue_size=16)
    batcher.start()

    async def main() -> list[int]:
        results = await asyncio.gather(*(batcher.run(i, "head", 10) for i in range(7)))
        return [r for r, _ in results]

    try:
        assert asyncio.run(main()) == [i * 10 for i in range(7)]
    finally:
        batcher.stop()
    assert [len(items) for _, items in gate.batches] == [3, 3, 1]


def test_jobs_of_different_kinds_never_share_a_batch():
    gate = Gate()
    gate.open.set()
    batcher = Batcher(gate, max_batch=8, max_wait_ms=100, queue_size=16)
    batcher.start()

    async def main() -> None:
        await asyncio.gather(*(batcher.run(i, "head" if i % 2 else "generate", 10) for i in range(6)))

    try:
        asyncio.run(main())
    finally:
        batcher.stop()
    assert sorted((k, sorted(items)) for k, items in gate.batches) == [("generate", [0, 2, 4]), ("head", [1, 3, 5])]


def test_a_full_queue_refuses_at_once_with_503_and_retry_after():
    gate = Gate()
    batcher = Batcher(gate, max_batch=1, max_wait_ms=0, queue_size=2)
    batcher.start()

    async def main() -> None:
        first = asyncio.ensure_future(batcher.run(0, "head", 10))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 5)  # job 0 is computing
        waiting = [asyncio.ensure_future(batcher.run(i, "head", 10)) for i in (1, 2)]
        await asyncio.sleep(0)
        assert batcher.full
        with pytest.raises(ApiError) as refused:
            batcher.submit(3, "head")
        assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
        gate.open.set()
        assert [r for r, _ in await asyncio.gather(first, *waiting)] == [0, 10, 20]

    try:
        asyncio.run(main())
    finally:
        batcher.stop()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_jobs_set_aside_for_a_batch_of_their_kind_still_count_against_the_queue():
    gate = Gate()
    gate.open.set()
    batcher = Batcher(gate, max_batch=8, max_wait_ms=1000, queue_size=2)
    batcher.start()

    async def main() -> None:
        head = asyncio.ensure_future(batcher.run(0, "head", 10))  # its batch gathers for a second
        accepted, refused = [], 0
        for i in range(1, 7):
            await asyncio.sleep(0.05)  # the gathering worker sets each chat's photo aside, out of the queue
            try:
                accepted.append(batcher.submit(i, "generate"))
            except ApiError as e:
                assert e.status == 503 and e.kind == "queue_full", e.message
                refused += 1
        # --queue-size 2 took all six before, each place freed as soon as the worker set its job aside
        assert (len(accepted), refused, batcher.full, batcher.depth) == (2, 4, True, 2)
        assert [r for r, _ in await asyncio.gather(head)] == [0]
        assert [await job.future for job in accepted] == [10, 20]

    try:
        asyncio.run(main())
    finally:
        batcher.stop()
    assert gate.batches == [("head", [0]), ("generate", [1, 2])]


def test_stop_answers_every_queued_job_then_refuses_new_ones():
    gate = Gate()
    batcher = Batcher(gate, max_batch=2, max_wait_ms=0, queue_size=8)
    batcher.start()

    async def main() -> None:
        jobs = [asyncio.ensure_future(batcher.run(i, "head", 10)) for i in range(5)]
        await asyncio.sleep(0)
        stopper = asyncio.get_running_loop().run_in_executor(None, batcher.stop)
        await asyncio.sleep(0.05)
        gate.open.set()
        await stopper
        assert [r for r, _ in await asyncio.gather(*jobs)] == [0, 10, 20, 30, 40]
        with pytest.raises(ApiError) as refused:
            batcher.submit(9, "head")
        assert refused.value.status == 503

    asyncio.run(main())


def test_a_job_whose_caller_timed_out_is_not_computed():
    gate = Gate()
    batcher = Batcher(gate, max_batch=1, max_wait_ms=0, queue_size=8)
    batcher.start()

    async def main() -> None:
        first = asyncio.ensure_future(batcher.run(0, "head", 10))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 5)
        with pytest.raises(ApiError) as late:
            await batcher.run(1, "head", 0.05)
        assert late.value.status == 504
        gate.open.set()
        await first
        assert (await batcher.run(2, "head", 10))[0] == 20

    try:
        asyncio.run(main())
    finally:
        batcher.stop()
    assert [items for _, items in gate.batches] == [[0], [2]]


def test_a_failing_batch_answers_its_jobs_with_the_error_and_the_worker_goes_on():
    calls = []

    def flaky(kind: str, items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return items

    batcher = Batcher(flaky, max_batch=1, max_wait_ms=0, queue_size=4)
    batcher.start()

    async def main() -> None:
        with pytest.raises(RuntimeError):
            await batcher.run(1, "head", 10)
        assert (await batcher.run(2, "head", 10))[0] == 2

    try:
        asyncio.run(main())
    finally:
        batcher.stop()
