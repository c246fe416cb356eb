"""Serving fixtures: the trained tiny checkpoint behind a real uvicorn server on a free localhost port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

import bbuvl
from tests.serve.client import Client

API_KEY = "serve-test-key-0123456789abcdef"


@pytest.fixture(scope="session")
def photos(small_dataset) -> list[Path]:
    """The small dataset's photos (224x168 PNGs), train then val."""
    from bbuvl.data.schema import read_records, resolve_image

    return [resolve_image(small_dataset / name, r.image) for name in ("train.jsonl", "val.jsonl")
            for r in read_records(small_dataset / name)]


@pytest.fixture(scope="session")
def engine(trained_checkpoint):
    """The trained tiny checkpoint in head mode (its objectness threshold is 0: every photo gets boxes)."""
    from bbuvl.serve.engine import Engine

    return Engine.load(trained_checkpoint, mode="head", device="cpu")


@pytest.fixture(scope="session")
def keys():
    from bbuvl.serve.auth import KeyStore

    return KeyStore([API_KEY])


@contextmanager
def running(app) -> Iterator[Client]:
    """Serve `app` with uvicorn in a thread on a free port, configured as `bbuvl serve` configures it; yields a client;
    stops (draining) on exit."""
    import uvicorn

    from bbuvl.serve.server import config

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(config(app, drain_s=9, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Client("127.0.0.1", sock.getsockname()[1], API_KEY)
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@pytest.fixture()
def serve(engine, keys):
    """Call with ServeSettings fields to get a client of a fresh server (stopped after the test)."""
    from contextlib import ExitStack

    from bbuvl.serve.app import ServeSettings, create_app

    with ExitStack() as stack:
        def start(**settings) -> Client:
            return stack.enter_context(running(create_app(engine, keys, ServeSettings(**settings))))

        yield start


def _hangup_heard() -> None:
    """SIGHUP at its default, as a server started from a terminal has it, also when the tests run under nohup."""
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


@contextmanager
def cli_server(args: list[str], log: Path) -> Iterator[tuple[Client, subprocess.Popen]]:
    """`bbuvl serve ARGS --port 0` as its own process (the real command line); yields a client once it listens and
    the process; kills it on exit if it is still running."""
    src = str(Path(bbuvl.__file__).parents[1])  # the same bbuvl as this test's, installed or not
    env = {**os.environ, "BBUVL_API_KEYS": API_KEY, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bbuvl.cli", "serve", *args, "--port", "0"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2], preexec_fn=_hangup_heard)
    try:
        port = None
        deadline = time.monotonic() + 90
        while port is None:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            m = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)/", log.read_text())
            port = int(m.group(1)) if m else None
            time.sleep(0.1)
        yield Client("127.0.0.1", port, API_KEY), proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
