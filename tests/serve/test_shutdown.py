"""SIGTERM during a burst: the server stops accepting, answers every request it holds, and exits 0."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import bbuvl
from tests.serve.client import Client
from tests.serve.conftest import API_KEY


def test_sigterm_answers_every_accepted_request_then_exits_0(trained_checkpoint, photos, tmp_path):
    src = str(Path(bbuvl.__file__).parents[1])  # the same bbuvl as this test's, installed or not
    env = {**os.environ, "BBUVL_API_KEYS": API_KEY, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    log = tmp_path / "serve.log"
    # A long gathering window holds the burst inside the server when SIGTERM comes.
    cmd = [sys.executable, "-m", "bbuvl.cli", "serve", "-c", str(trained_checkpoint), "--port", "0", "--mode", "head",
           "--device", "cpu", "--max-batch", "16", "--max-wait-ms", "1500"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2])
    try:
        port = None
        deadline = time.monotonic() + 90
        while port is None:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            m = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)/", log.read_text())
            port = int(m.group(1)) if m else None
            time.sleep(0.1)
        client = Client("127.0.0.1", port, API_KEY)
        assert client.request("GET", "/healthz").status == 200

        replies: list = [None] * 6

        def send(i: int) -> None:
            replies[i] = client.detect_file(photos[i])

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(replies))]
        for t in threads:
            t.start()
        time.sleep(0.6)  # every request is in, waiting for its batch
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with socket.socket() as s:  # no longer accepting
            assert s.connect_ex(("127.0.0.1", port)) != 0
        for t in threads:
            t.join(60)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [r.status for r in replies] == [200] * len(replies)
    assert all(r.json()["objects"] for r in replies)
    assert max(r.json()["timing_ms"]["batch_size"] for r in replies) > 1
