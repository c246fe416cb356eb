"""One output, one writer, between threads of one process too: a lock is its thread's to take again, and another
thread is refused as another process is, naming it (bbuvl/outputs.py `OutputLock`, docs/outputs.md).

A notebook ran `run_predictions` on a background thread with one checkpoint and, while it wrote, a second with another
checkpoint into the same file: the second was let in (the lock was re-entrant for the whole process), and the file
ended with the lines of both under the second's manifest. Two threads starting at the same instant were sometimes
refused naming this process's own pid instead: the check and the insert were two steps."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

from bbuvl import outputs
from bbuvl.data.library_outputs import holding_outputs
from bbuvl.infer.batch import PredictJob, run_predictions
from bbuvl.infer.output import OutputError, read_manifest
from bbuvl.outputs import (READERS_ENV, Claim, OutputConflict, OutputLock, claim_outputs, hold_outputs, live_readers,
                           lock_path, refuse_inputs_being_written, release_readings, writer_around, writer_at)
from tests.reliability.faults import fake_lines


@pytest.fixture(autouse=True)
def registry(tmp_path, monkeypatch) -> Path:
    """Readers register in a folder of this test's."""
    folder = tmp_path / "readers"
    monkeypatch.setenv(READERS_ENV, str(folder))
    return folder


@contextmanager
def held_on_a_thread(take: Callable[[], object], name: str = "holder") -> Iterator[object]:
    """What `take()` returns, taken on a thread named `name` that keeps it until the block ends, then lets go of it
    there, and of what that thread registered as read."""
    taken, done, result = threading.Event(), threading.Event(), {}

    def hold() -> None:
        try:
            result["held"] = take()
        except BaseException as e:  # said in the test's own thread
            result["error"] = e
        taken.set()
        done.wait(30)
        held = result.get("held")
        if isinstance(held, Claim):
            held.finish(True)
        elif isinstance(held, OutputLock):
            held.release()
        elif hasattr(held, "__exit__"):
            held.__exit__(None, None, None)
        release_readings()  # what the thread registered and no claim of its adopted

    thread = threading.Thread(target=hold, name=name)
    thread.start()
    try:
        assert taken.wait(30)
        if "error" in result:
            raise result["error"]
        yield result["held"]
    finally:
        done.set()
        thread.join(30)


def in_thread(call: Callable[[], object]) -> object:
    """What `call()` returns, or the exception it raises, run on a thread of its own."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(call)
        return future.exception(30) or future.result()


def test_a_second_thread_is_refused_an_output_a_thread_holds_naming_that_thread_and_takes_it_once_let_go(tmp_path):
    out = tmp_path / "pred.jsonl"
    with held_on_a_thread(lambda: hold_outputs("predict", [out])):
        refused = in_thread(lambda: OutputLock(out, "predict").acquire())
        assert isinstance(refused, OutputConflict)
        assert str(refused) == (f"{out}: another `bbuvl predict` (thread 'holder' of this process, pid {os.getpid()}) "
                                "is writing it; wait for it to finish, or stop it and re-run")
        assert lock_path(out).is_file()  # the refusal let go of nothing of the holder's
    assert not lock_path(out).exists()
    taken = in_thread(lambda: OutputLock(out, "predict").acquire())
    assert isinstance(taken, OutputLock)
    taken.release()  # let go on another thread than the one that took it: a lock is not bound to its thread
    assert not lock_path(out).exists()


def test_the_thread_holding_an_output_takes_it_again_and_lets_go_only_when_its_last_hold_does(tmp_path):
    # `bbuvl predict` holds its output, and the run_predictions it calls takes the same lock again on that thread
    out = tmp_path / "pred.jsonl"
    first = OutputLock(out, "predict").acquire()
    again = OutputLock(out, "predict").acquire()
    assert writer_at(out) is None  # this thread's own claim is no other writer
    again.release()
    assert lock_path(out).is_file() and isinstance(in_thread(lambda: OutputLock(out, "predict").acquire()),
                                                    OutputConflict)
    first.release()
    assert not lock_path(out).exists()


def test_a_refused_lock_released_lets_go_of_nothing_another_thread_holds(tmp_path):
    out = tmp_path / "pred.jsonl"
    refused = OutputLock(out, "predict")
    with held_on_a_thread(lambda: OutputLock(out, "predict").acquire()):
        with pytest.raises(OutputConflict, match="thread 'holder' of this process"):
            refused.acquire()
        refused.release()  # as `try: acquire() ... finally: release()` would
        assert isinstance(in_thread(lambda: OutputLock(out, "predict").acquire()), OutputConflict)
        assert lock_path(out).is_file()


def test_of_threads_taking_one_output_at_the_same_instant_exactly_one_holds_it_and_the_others_name_it(tmp_path):
    for attempt in range(40):
        out = tmp_path / f"pred{attempt}.jsonl"
        start = threading.Barrier(4)

        def take() -> OutputLock | OutputConflict:
            start.wait(10)
            try:
                return OutputLock(out, "predict").acquire()
            except OutputConflict as e:
                return e

        with ThreadPoolExecutor(4) as pool:
            got = [f.result(30) for f in [pool.submit(take) for _ in range(4)]]
        held = [g for g in got if isinstance(g, OutputLock)]
        assert len(held) == 1, got
        for refused in (g for g in got if isinstance(g, OutputConflict)):
            # another thread of this process, never this process taken for another one by its pid
            assert re.search(rf"\(thread '[^']+' of this process, pid {os.getpid()}\) is writing it", str(refused))
        held[0].release()
        assert not lock_path(out).exists()


def test_a_folder_and_a_file_inside_it_held_by_two_threads_refuse_each_other(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    with held_on_a_thread(lambda: claim_outputs("data synth", {}, folders=[ds])):
        refused = in_thread(lambda: claim_outputs("data split", {}, [ds / "train.jsonl"]))
        assert isinstance(refused, OutputConflict)
        assert str(refused).startswith(f"{ds}: another `bbuvl data synth` (thread 'holder' of this process, pid "
                                       f"{os.getpid()}) is writing it, and {ds / 'train.jsonl'} is inside it")
    with held_on_a_thread(lambda: claim_outputs("data split", {}, [ds / "train.jsonl"])):
        refused = in_thread(lambda: claim_outputs("data synth", {}, folders=[ds]))
        assert isinstance(refused, OutputConflict) and "(thread 'holder' of this process" in str(refused)
        assert "holds it" in str(refused)
    # One thread's own claim around its output is its own (`train` holds run/ and saves inside it)
    with claim_outputs("data synth", {}, folders=[ds]), claim_outputs("data split", {}, [ds / "train.jsonl"]):
        assert lock_path(ds).is_file() and lock_path(ds / "train.jsonl").is_file()


def test_another_threads_claim_is_a_running_writer_to_readers_and_this_threads_own_is_none(tmp_path):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    with held_on_a_thread(lambda: hold_outputs("train", [run]), name="training"):
        writer = writer_at(run)
        assert writer is not None and writer.running and writer.command == "train"
        assert writer.who == f"thread 'training' of this process, pid {os.getpid()}"
        assert writer_around(run / "final") is not None
        with pytest.raises(OutputConflict, match=re.escape(f"`bbuvl train` (thread 'training' of this process, pid "
                                                           f"{os.getpid()}) is writing now")):
            refuse_inputs_being_written({"-c": run / "final"})
    with hold_outputs("train", [run]):
        assert writer_at(run) is None and writer_around(run / "final") is None
        seen = in_thread(lambda: writer_at(run))
        assert seen.running and seen.who == f"thread {threading.current_thread().name!r} of this process, pid {os.getpid()}"


def test_a_forked_child_takes_locks_though_a_parents_thread_was_taking_one_at_the_fork(tmp_path):
    # The guard of this process's locks, held by another thread when a DataLoader worker was forked, is never let go
    # in the child: its first lock would wait for ever
    with held_guard():
        pid = os.fork()
        if pid == 0:  # the child: take a lock, and say so by its status
            try:
                OutputLock(tmp_path / "child.jsonl", "predict").acquire().release()
                os._exit(0)
            except BaseException:
                os._exit(1)
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child waited for the guard its parent's thread held at the fork")
    assert os.waitstatus_to_exitcode(done[1]) == 0


@contextmanager
def held_guard() -> Iterator[None]:
    """Another thread holding the guard of this process's locks (as one taking a lock does) while the block runs."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with outputs._HELD_GUARD:
            taken.set()
            done.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert taken.wait(10)
        yield
    finally:
        done.set()
        thread.join(30)


def test_two_threads_predicting_into_one_file_the_second_is_refused_and_the_file_holds_the_firsts_lines(tmp_path):
    out = tmp_path / "pred.jsonl"
    names = [f"/photos/img{i}.jpg" for i in range(6)]
    writing, second_done, results = threading.Event(), threading.Event(), {}

    def run(checkpoint: str) -> None:
        def predict(paths: list[str]) -> list[dict]:
            writing.set()
            if checkpoint == "/ckpt-A":
                second_done.wait(30)  # the first still writes while the second starts
            return fake_lines(paths)

        job = PredictJob(names, out, "head", 1, source="/photos", checkpoint=checkpoint)
        try:
            results[checkpoint] = run_predictions(job, predict)
        except OutputError as e:
            results[checkpoint] = e
        finally:
            if checkpoint == "/ckpt-B":
                second_done.set()

    first = threading.Thread(target=run, args=("/ckpt-A",), name="first")
    first.start()
    assert writing.wait(30)
    second = threading.Thread(target=run, args=("/ckpt-B",), name="second")
    second.start()
    second.join(30)
    first.join(30)
    assert isinstance(results["/ckpt-B"], OutputError)
    assert str(results["/ckpt-B"]) == (f"{out}: another `bbuvl predict` (thread 'first' of this process, pid "
                                       f"{os.getpid()}) is writing it; wait for it to finish, or stop it and re-run")
    assert results["/ckpt-A"]["predicted"] == 6
    assert [json.loads(line)["image"] for line in out.read_text(encoding="utf-8").splitlines()] == names
    assert read_manifest(out).checkpoint == "/ckpt-A"


def test_a_writer_on_one_thread_is_refused_what_another_thread_reads_naming_it_and_its_own_reading_is_its_own(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "train.jsonl").write_text("{}\n", encoding="utf-8")

    def export() -> object:  # as export_coco holds its output and reads its dataset until it returns
        block = holding_outputs("data export-coco", {"dataset": ds / "train.jsonl"}, [tmp_path / "coco.json"])
        block.__enter__()
        return block

    with held_on_a_thread(export, name="exporting"):
        with pytest.raises(OutputConflict, match=re.escape(f"(thread 'exporting' of this process, pid {os.getpid()}, "
                                                           "since ") + r".*\) is reading it"):
            with holding_outputs("data split", {"dataset": tmp_path / "other.jsonl"}, [ds / "train.jsonl"]):
                pytest.fail("wrote over a dataset another thread reads")
        assert (ds / "train.jsonl").read_text(encoding="utf-8") == "{}\n"
    # What this thread read itself it may replace (a re-run over its own earlier output)
    refuse_inputs_being_written({"dataset": ds / "train.jsonl"})
    with holding_outputs("data split", {"dataset": tmp_path / "other.jsonl"}, [ds / "train.jsonl"]):
        pass


def test_a_claim_adopts_and_lets_go_only_the_readings_of_its_own_thread(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    with held_on_a_thread(lambda: refuse_inputs_being_written({"-c": model}), name="serving"):
        with hold_outputs("predict", [tmp_path / "pred.jsonl"]) as claim:
            assert claim.readings == []  # the other thread's reading is not this claim's to let go
        release_readings()  # nor what this thread's command ends with
        assert [(r.path, r.who) for r in live_readers()] == [(model, f"thread 'serving' of this process, pid "
                                                                      f"{os.getpid()}")]
    assert list(live_readers()) == []  # let go on its own thread
