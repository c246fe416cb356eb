"""Slow, stalled and vanishing clients, over raw sockets: each is cut off in time, none holds up another, and
none is counted or logged as a server failure."""

from __future__ import annotations

import base64
import json
import logging
import select
import socket
import time
from pathlib import Path

import pytest

from tests.serve.conftest import API_KEY


def raw(port: int, head: str, body: bytes = b"") -> socket.socket:
    """A connection that has sent `head` (request line and headers, as far as given) and `body`."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(head.encode() + body)
    return s


def reply(s: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the answer on `s` (read until the server closes it)."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def reply_kept(s: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of one answer on a kept-alive `s` (read up to its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += s.recv(65536)
    return int(head.split()[1]), json.loads(body)


def upload_head(length: int) -> str:
    return (f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {length}\r\n\r\n")


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_stalled_upload_gets_408_after_the_read_timeout_and_others_are_answered_meanwhile(serve, photos):
    client = serve(read_timeout_s=1.5)
    data = photos[0].read_bytes()
    stalled = [raw(client.port, upload_head(len(data)), data[:100]) for _ in range(8)]
    t = time.monotonic()
    assert client.request("GET", "/readyz").status == 200  # eight stalled uploads hold up nobody
    for s in stalled:  # held for ever before: no deadline on a body
        status, body = reply(s)
        assert status == 408 and body["error"]["kind"] == "body_timeout", body
        assert "100 bytes came" in body["error"]["message"] and "--read-timeout" in body["error"]["message"]
        s.close()
    assert time.monotonic() - t < 4
    assert client.detect_file(photos[1]).status == 200


def trickle(s: socket.socket, data: bytes, pieces: int, pause_s: float) -> None:
    """Send `data` on `s` in `pieces` parts, `pause_s` apart: a slow link that never stalls."""
    step = -(-len(data) // pieces)
    for i in range(0, len(data), step):
        s.sendall(data[i:i + step])
        time.sleep(pause_s)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_slow_but_steady_upload_taking_longer_than_the_read_timeout_is_answered(serve, photos):
    client = serve(read_timeout_s=1.0)
    data = photos[0].read_bytes()
    s = raw(client.port, upload_head(len(data)))
    t = time.monotonic()
    trickle(s, data, pieces=8, pause_s=0.4)  # 3.2 s in all, never silent for 1 s
    assert time.monotonic() - t > 2.5
    status, body = reply_kept(s)
    s.close()
    assert status == 200, body  # 408 before: the read timeout was a deadline for the whole body
    assert body["objects"] and (body["width"], body["height"]) == (224, 168)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_body_over_the_limit_sent_slowly_is_still_413_not_408(serve):
    client = serve(read_timeout_s=1.0, max_body_mb=0.01)  # 10,485 bytes
    s = raw(client.port, upload_head(16_000))
    trickle(s, b"\x89PNG" + b"0" * 15_996, pieces=6, pause_s=0.4)  # 2.4 s: the refused rest is read away as it comes
    status, body = reply(s)
    s.close()
    assert status == 413 and body["error"]["kind"] == "body_too_large", body


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_connection_trickling_its_headers_gets_408_and_is_closed_after_the_read_timeout(serve):
    client = serve(read_timeout_s=1.0)
    s = raw(client.port, "GET /readyz HTTP/1.1\r\nHost: x\r\n")
    t = time.monotonic()
    for _ in range(20):  # a header line every 0.2 s, until the server answers: a per-byte idle timer would never fire
        s.sendall(b"X-Slow: 1\r\n")
        if select.select([s], [], [], 0.2)[0]:
            break
    status, body = reply(s)
    s.close()
    assert time.monotonic() - t < 3  # held for ever before
    # closed without a word before, the client left to guess why
    assert status == 408 and body["error"]["kind"] == "header_timeout" and "--read-timeout" in body["error"]["message"]
    assert client.request("GET", "/readyz").status == 200


def logged_ms(caplog, status: int) -> list[float]:
    """The times of the access log's lines of answers of `status` (its last field, in ms)."""
    lines = [r.getMessage() for r in caplog.records if r.name == "bbuvl.serve"]
    return [float(line.split()[-2]) for line in lines if line.split()[-3:-2] == [str(status)]]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_408_is_logged_with_the_time_from_its_requests_first_byte(serve, caplog):
    client = serve(read_timeout_s=1.0)
    with caplog.at_level(logging.INFO, logger="bbuvl.serve"):
        for head in ("GET /readyz HTTP/1.1\r\nHost: x\r\n", upload_head(1_000) + "0" * 10):  # headers, a body stalled
            s = raw(client.port, head)
            assert reply(s)[0] == 408
            s.close()
        deadline = time.monotonic() + 5
        while len(logged_ms(caplog, 408)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    # the header timeout was logged as '127.0.0.1 - - 408 0.0 ms' before: timed from its answer, not its first byte
    assert len(logged_ms(caplog, 408)) == 2 and all(900 < ms < 5000 for ms in logged_ms(caplog, 408)), caplog.text


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_idle_connection_is_closed_after_the_read_timeout_without_an_answer(serve):
    client = serve(read_timeout_s=1.0)
    s = socket.create_connection(("127.0.0.1", client.port), timeout=5)
    t = time.monotonic()
    assert s.recv(100) == b"" and time.monotonic() - t < 3  # nothing asked, nothing answered: no 408 to a silent client
    s.close()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_kept_alive_connection_gets_a_fresh_deadline_per_request(serve):
    import http.client

    client = serve(read_timeout_s=1.0)
    conn = http.client.HTTPConnection(client.host, client.port, timeout=10)
    try:
        for _ in range(3):  # 0.6 s apart: 1.8 s in all on one connection, each request within its own second
            conn.request("GET", "/readyz", headers={"Authorization": f"Bearer {API_KEY}"})
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["ready"]
            time.sleep(0.6)
    finally:
        conn.close()


def test_a_client_gone_mid_upload_is_counted_499_not_500_and_logs_no_traceback(serve, caplog):
    client = serve()
    with caplog.at_level(logging.INFO):
        s = raw(client.port, upload_head(10_000), b"\x89PNG" + b"0" * 100)
        time.sleep(0.3)
        s.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            metrics = client.request("GET", "/metrics").body.decode()
            if 'status="499"' in metrics:
                break
            time.sleep(0.1)
    assert 'bbuvl_requests_total{route="/v1/detect",status="499"} 1.0' in metrics
    assert 'bbuvl_errors_total{kind="client_disconnected"} 1.0' in metrics
    assert 'status="500"' not in metrics  # a server failure before, with uvicorn's traceback in the log
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_a_compressed_body_is_refused_naming_its_content_encoding(serve, photos):
    import gzip

    client = serve()
    r = client.request("POST", "/v1/detect", gzip.compress(photos[0].read_bytes()),
                       {"Content-Type": "image/png", "Content-Encoding": "gzip"})
    assert r.status == 415, r.body  # 400 not_an_image before: the gzip bytes were read as the photo
    assert r.json()["error"]["kind"] == "unsupported_content_encoding" and "gzip" in r.json()["error"]["message"]
    assert client.detect_file(photos[0]).status == 200


def test_a_connection_past_max_connections_gets_503_with_retry_after_and_the_others_are_served(serve):
    client = serve(max_connections=3)
    idle = [socket.create_connection(("127.0.0.1", client.port), timeout=10) for _ in range(3)]
    time.sleep(0.2)  # the server has taken them
    s = raw(client.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split()[1] == b"503" and b"retry-after: 1" in head.lower()
    assert json.loads(body)["error"]["kind"] == "too_many_connections"
    idle.pop().close()
    time.sleep(0.2)
    assert client.request("GET", "/healthz").status == 200
    # Answered below the app, it is counted and logged as the app's answers are (in neither before: a flood of
    # connections was invisible to the operator)
    metrics = client.request("GET", "/metrics").body.decode()
    assert 'bbuvl_errors_total{kind="too_many_connections"} 1.0' in metrics
    assert 'bbuvl_requests_total{route="other",status="503"} 1.0' in metrics, metrics
    for c in idle:
        c.close()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_connection_answered_before_its_body_came_is_closed_once_the_client_stalls(serve):
    client = serve(read_timeout_s=1.0)
    heads = {  # each answered without its body being read: no key, a declared size over the limit, a wrong type
        401: upload_head(1_000_000).replace(f"Authorization: Bearer {API_KEY}\r\n", ""),
        413: upload_head(900_000_000),
        415: upload_head(1_000_000).replace("image/png", "text/plain"),
    }
    for status, head in heads.items():
        s = raw(client.port, head, b"\x89PNG")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        assert data.split()[1] == str(status).encode(), data
        s.sendall(b"0" * 100)  # more of the body after the answer, then silence
        t = time.monotonic()
        s.settimeout(8)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        s.close()
        assert time.monotonic() - t < 3, status  # open for ever before: nothing re-armed a deadline after the answer
    assert client.request("GET", "/readyz").status == 200


def server_side_state(server_port: int, client_port: int) -> str | None:
    """The TCP state of the server's end of a localhost connection, as /proc/net/tcp gives it ("01" is ESTABLISHED),
    None once the server has no such socket: what the server holds, seen without reading from the client's end."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return state
    return None


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_client_that_reads_none_of_its_answers_is_cut_after_the_read_timeout(serve):
    client = serve(read_timeout_s=1.0)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", client.port))
    request = f"GET /static/app.js HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode()
    s.sendall(request * 1500)  # pipelined and never read: 11 MB of answers, more than the sockets' buffers hold
    mine = s.getsockname()[1]
    deadline = time.monotonic() + 60
    while server_side_state(client.port, mine) == "01" and time.monotonic() < deadline:
        time.sleep(0.2)
    state = server_side_state(client.port, mine)
    s.close()
    assert state != "01", "the server still holds a connection whose client reads nothing"  # held for ever before
    assert client.request("GET", "/readyz").status == 200


def test_request_bodies_held_at_once_are_bounded_and_given_back(serve, photos):
    client = serve(max_bodies_mb=1.0, max_body_mb=1.0, max_json_mb=1.0, read_timeout_s=10)  # 1 MiB of bodies in all
    held = raw(client.port, upload_head(1_048_000), b"\x89PNG" + b"0" * 1_039_996)  # 1,040,000 bytes in, then stalled
    time.sleep(0.5)
    assert photos[0].stat().st_size > 10_000
    r = client.detect_file(photos[0])
    # 200 before, whatever the bodies held: 512 connections x 20 MiB would grow the process by 10 GiB
    assert r.status == 503 and r.headers["retry-after"] == "1", r.body
    assert r.json()["error"]["kind"] == "queue_full" and "MiB of request bodies" in r.json()["error"]["message"]
    held.close()  # its bytes are given back once it is answered (499)
    deadline = time.monotonic() + 5
    while (r := client.detect_file(photos[0])).status == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.status == 200, r.body


def trickle_until_closed(s: socket.socket, piece: bytes, pause_s: float, limit_s: float) -> tuple[bytes, float]:
    """Send `piece` every `pause_s` on `s` until the server closes it or `limit_s` pass; what the server sent back,
    and the seconds it took to close (`limit_s` when it never did)."""
    t, answer = time.monotonic(), b""
    while time.monotonic() - t < limit_s:
        try:
            s.sendall(piece)
            s.settimeout(pause_s)
            while data := s.recv(65536):
                answer += data
            return answer, time.monotonic() - t
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return answer, time.monotonic() - t
    return answer, limit_s


def test_the_default_floor_cuts_a_byte_a_minute_and_lets_20_kb_s_of_a_5_mb_photo_through():
    from bbuvl.serve.app import ServeSettings

    pace = ServeSettings().body_pace  # --read-timeout 60, --min-body-rate 1 KiB/s
    # a byte every 59 s is never silent for 60 s: only the floor cuts it, at the first byte due after 60 s
    assert pace.deadline(0.0, 59.0, 1) < 118.0
    size, rate = 5_000_000, 20_000
    assert all(t < pace.deadline(0.0, t, rate * t) for t in range(1, size // rate + 1))  # every piece in time


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_body_trickled_under_the_floor_gets_408_while_a_slow_one_above_it_completes(serve, photos):
    client = serve(read_timeout_s=1.0, min_body_rate_kib=4.0)
    s = raw(client.port, upload_head(10_000))
    answer, took = trickle_until_closed(s, b"\x89", pause_s=0.3, limit_s=6)  # never silent for the read timeout
    s.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1:2] == [b"408"] and took < 3, (answer, took)  # held for as long as it trickled before
    error = json.loads(body)["error"]
    assert error["kind"] == "body_too_slow" and "--min-body-rate" in error["message"], error
    # 16 KiB/s, four times the floor, for 3.5 s: longer than the read timeout, never under the floor
    data = json.dumps({"image": base64.b64encode(photos[0].read_bytes()).decode()}).encode()
    data += b" " * (56 * 1024 - len(data))  # white space after the JSON value: its size, not its meaning
    s = raw(client.port, upload_head(len(data)).replace("image/png", "application/json"))
    trickle(s, data, pieces=14, pause_s=0.25)
    status, body = reply_kept(s)
    s.close()
    assert status == 200 and body["objects"], body


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_connection_answered_before_its_body_came_is_closed_once_the_rest_comes_under_the_floor(serve):
    client = serve(read_timeout_s=1.0, min_body_rate_kib=4.0)
    s = raw(client.port, upload_head(1_000_000).replace(f"Authorization: Bearer {API_KEY}\r\n", ""), b"\x89PNG")
    answer, took = trickle_until_closed(s, b"0", pause_s=0.3, limit_s=6)
    s.close()
    assert answer.split()[1:2] == [b"401"] and took < 3, (answer[:100], took)  # open for as long as it trickled before
    assert client.request("GET", "/readyz").status == 200


@pytest.mark.slow  # a process of its own: 14 s, most of it loading
def test_bbuvl_serve_takes_the_floor_as_min_body_rate(trained_checkpoint, tmp_path):
    from tests.serve.conftest import cli_server

    args = ["-c", str(trained_checkpoint), "--mode", "head", "--device", "cpu", "--read-timeout", "1",
            "--min-body-rate", "4"]
    with cli_server(args, tmp_path / "serve.log") as (client, _):
        s = raw(client.port, upload_head(10_000))
        answer, took = trickle_until_closed(s, b"\x89", pause_s=0.3, limit_s=6)
        s.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1:2] == [b"408"] and took < 3, (answer, took)
    assert "floor of 4 KiB/s" in json.loads(body)["error"]["message"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_connections_past_max_connections_that_close_at_once_log_no_traceback(serve, caplog):
    import subprocess
    import sys

    client = serve(max_connections=1)
    held = socket.create_connection(("127.0.0.1", client.port), timeout=10)
    time.sleep(0.2)  # the server has taken it: every connection after it is past the bound
    # A flood of connections, each closed as soon as it has sent part of a request, from another process (this one's
    # threads would take turns with the server's): many are gone when the server writes their 503 and shuts its side
    flood = ("import socket, threading\n"
             "def churn():\n"
             "    for _ in range(150):\n"
             f"        s = socket.create_connection(('127.0.0.1', {client.port})); s.sendall(b'GET /healthz HTTP/1.1\\r\\n'); s.close()\n"
             "ts = [threading.Thread(target=churn) for _ in range(8)]\n"
             "[t.start() for t in ts]; [t.join() for t in ts]\n")
    with caplog.at_level(logging.INFO):
        subprocess.run([sys.executable, "-c", flood], check=True, timeout=60)
        time.sleep(1.5)
    # "Exception in callback ... connection_made" with an OSError traceback, hundreds of them, before: the write side
    # shut on a connection its client had closed already
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records][:3]
    held.close()
    time.sleep(0.2)
    assert client.request("GET", "/healthz").status == 200
