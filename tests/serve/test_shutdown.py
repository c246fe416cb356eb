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


def test_an_upload_still_arriving_when_the_drain_ends_gets_503_and_no_traceback(trained_checkpoint, photos, tmp_path):
    log = tmp_path / "serve.log"
    args = ["-c", str(trained_checkpoint), "--mode", "head", "--device", "cpu", "--timeout", "1", "--read-timeout", "5"]
    data = photos[0].read_bytes()
    with cli_server(args, log) as (client, proc):
        s = socket.create_connection(("127.0.0.1", client.port), timeout=20)
        s.sendall((f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {client.key}\r\n"
                   f"Content-Type: image/png\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data[:100])
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        answer = b""
        try:
            for i in range(100, len(data), 200):  # slow but steady: longer than the 2 s drain in all
                s.sendall(data[i:i + 200])
                time.sleep(0.3)
        except OSError:
            pass  # the server answered and closed
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        s.close()
        assert proc.wait(60) == 0, log.read_text()
    # nothing before: the connection went with a 500 and a traceback in the log
    assert answer.split()[1] == b"503" and b'"kind":"not_ready"' in answer and b"send it again" in answer, answer
    assert "Traceback" not in log.read_text()
