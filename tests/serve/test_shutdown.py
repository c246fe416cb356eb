"""SIGTERM during a burst: the server stops accepting, answers every request it holds, and exits 0."""

from __future__ import annotations

import signal
import socket
import threading
import time

from tests.serve.conftest import cli_server


def test_sigterm_answers_every_accepted_request_then_exits_0(trained_checkpoint, photos, tmp_path):
    log = tmp_path / "serve.log"
    # A long gathering window holds the burst inside the server when SIGTERM comes.
    args = ["-c", str(trained_checkpoint), "--mode", "head", "--device", "cpu", "--max-batch", "16", "--max-wait-ms", "1500"]
    with cli_server(args, log) as (client, proc):
        port = client.port
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
    assert [r.status for r in replies] == [200] * len(replies)
    assert all(r.json()["objects"] for r in replies)
    assert max(r.json()["timing_ms"]["batch_size"] for r in replies) > 1


def test_a_second_server_on_a_port_in_use_is_refused_naming_it():
    from bbuvl.serve.server import bind

    first = bind("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        try:
            bind("127.0.0.1", port)
        except OSError as e:
            message = str(e)
        else:
            raise AssertionError("two servers listen on one port")
        assert f"127.0.0.1:{port}: another server" in message and "--port" in message
    finally:
        first.close()
