"""SIGTERM (or SIGHUP: a closed terminal) during a burst: the server stops accepting, answers every request it holds,
and exits 0."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time

import pytest

from tests.serve.client import read_to_close
from tests.serve.conftest import cli_server


def _burst(client, photos, n: int) -> tuple[list, list[threading.Thread]]:
    """`n` detect requests sent at once, a thread each; each reply fills its place in the list as it comes."""
    replies: list = [None] * n

    def send(i: int) -> None:
        replies[i] = client.detect_file(photos[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return replies, threads


# SIGHUP: a closed terminal or ssh session, which killed the server with every request in flight cut off
# (slow: the default run has SIGHUP's handling in tests/test_entry_hangup.py, and the drain here is SIGTERM's code)
@pytest.mark.parametrize("stop", ["SIGTERM", pytest.param("SIGHUP", marks=[pytest.mark.slow, pytest.mark.skipif(
    not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this OS")])])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_sigterm_or_sighup_answers_every_accepted_request_then_exits_0(trained_checkpoint, photos, tmp_path, stop):
    log = tmp_path / "serve.log"
    # A long gathering window holds the burst inside the server when SIGTERM comes.
    args = ["-c", str(trained_checkpoint), "--mode", "head", "--device", "cpu", "--max-batch", "16", "--max-wait-ms", "1500"]
    with cli_server(args, log) as (client, proc):
        port = client.port
        assert client.request("GET", "/healthz").status == 200

        replies, threads = _burst(client, photos, 6)
        time.sleep(0.6)  # every request is in, waiting for its batch
        proc.send_signal(getattr(signal, stop))
        time.sleep(0.3)
        with socket.socket() as s:  # no longer accepting
            assert s.connect_ex(("127.0.0.1", port)) != 0
        for t in threads:
            t.join(60)
        assert proc.wait(60) == 0, log.read_text()
    assert f"drained and stopped on {stop}" in log.read_text()
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


def _upload_across(port: int, key: str, data: bytes, before: float, send_signal, after: float = 0.0,
                   piece: int | None = None, pause: float = 0.0) -> bytes:
    """POST `data` to /v1/detect over a raw socket: its first 100 bytes at once, `send_signal()` `before` seconds later,
    the rest `after` seconds after that, in pieces of `piece` bytes (all at once by default) `pause` seconds apart; the
    whole answer, read until the server closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall((f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: image/png\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data[:100])
    time.sleep(before)
    send_signal()
    time.sleep(after)
    step = piece or len(data)
    try:
        for i in range(100, len(data), step):
            s.sendall(data[i:i + step])
            time.sleep(pause)
    except OSError:
        pass  # the server answered and closed
    answer = read_to_close(s)
    s.close()
    return answer


@pytest.fixture(scope="module")
def drain_ended(trained_checkpoint, photos, tmp_path_factory) -> dict:
    """One server (--timeout 1: a drain of 2 s; --read-timeout 5; a gathering window of 8 s) stopped by SIGTERM while
    two uploads were still at it, each on its own connection: `slow`, sent in pieces of 200 bytes 0.3 s apart (longer
    than the drain in all), and `waiting`, whose body came whole 1.5 s into the drain and then waited for its batch past
    the drain's end, before its own --timeout of 1 s would pass. Their answers, the log and the exit code; one server
    for both, as each took a server's start and stop of its own (a third of a minute on the loaded 2-core machine)."""
    log = tmp_path_factory.mktemp("drain-ended") / "serve.log"
    args = ["-c", str(trained_checkpoint), "--mode", "head", "--device", "cpu", "--timeout", "1", "--read-timeout", "5",
            "--max-wait-ms", "8000"]
    data = photos[0].read_bytes()
    answers: dict[str, bytes] = {}
    with cli_server(args, log) as (client, proc):
        def upload(name: str, **how) -> None:
            answers[name] = _upload_across(client.port, client.key, data, **how)

        def stop() -> None:
            assert slow_began.wait(30), "the slow upload never began"
            proc.send_signal(signal.SIGTERM)

        slow_began = threading.Event()  # SIGTERM comes once both uploads are under way
        slow = threading.Thread(target=upload, args=("slow",),
                                kwargs={"before": 0.1, "send_signal": slow_began.set, "piece": 200, "pause": 0.3})
        slow.start()
        upload("waiting", before=0.3, send_signal=stop, after=1.5)
        slow.join(60)
        code = proc.wait(60)
    return {**answers, "log": log.read_text(), "code": code}


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_an_upload_still_arriving_when_the_drain_ends_gets_503_and_no_traceback(drain_ended):
    assert drain_ended["code"] == 0, drain_ended["log"]
    answer = drain_ended["slow"]
    # nothing before: the connection went with a 500 and a traceback in the log
    assert answer.split()[1] == b"503" and b'"kind":"not_ready"' in answer and b"send it again" in answer, answer
    assert "Traceback" not in drain_ended["log"]


def test_a_photo_still_waiting_when_the_drain_ends_gets_a_json_503_and_no_traceback(drain_ended):
    assert drain_ended["code"] == 0, drain_ended["log"]
    answer = drain_ended["waiting"]
    # before: a text/plain 500 "Internal Server Error" and a traceback in the log
    assert answer.split()[1] == b"503" and b'"kind":"not_ready"' in answer and b"send it again" in answer, answer
    assert b"retry-after: 1" in answer.lower()
    assert "Traceback" not in drain_ended["log"]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_second_ctrl_c_answers_the_requests_in_flight_503_and_says_it_did_not_drain(trained_checkpoint, photos,
                                                                                    tmp_path):
    log = tmp_path / "serve.log"
    args = ["-c", str(trained_checkpoint), "--mode", "head", "--device", "cpu", "--max-batch", "16",
            "--max-wait-ms", "8000"]
    with cli_server(args, log) as (client, proc):
        replies, threads = _burst(client, photos, 3)
        time.sleep(0.8)  # every request is in, waiting for its batch (a gathering window of 8 s)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # uvicorn's "CTRL+C to force quit"
        for t in threads:
            t.join(30)
        code = proc.wait(30)
    text = log.read_text()
    # before: a text/plain 500 each, a traceback per request and one of the lifespan, "drained" logged, and exit 0
    assert [r.status for r in replies] == [503] * 3, [(r.status, r.body) for r in replies]
    assert all(r.json()["error"]["kind"] == "not_ready" and r.headers["retry-after"] == "1" for r in replies)
    assert "Traceback" not in text and "drained" not in text, text
    assert "3 request(s) in flight" in text and code == 130, (code, text)


def test_a_host_that_is_no_address_as_given_is_refused_before_anything_loads(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bbuvl.cli import app
    from bbuvl.serve.server import host_problem, is_loopback

    monkeypatch.setenv("BBUVL_API_KEYS", "k" * 32)
    runner = CliRunner()
    # before: '' listened on every interface ("serving ... on http://:PORT/"); the others failed to bind with
    # "cannot listen there (Name or service not known)", or as an IPv6 address, naming no way out
    for host, says in [("", "is empty, which would listen on every interface"), (" ", "is empty"),
                       ("127.0.0.1:8000", "give the address alone, 127.0.0.1, and --port 8000"),
                       ("[::1]:8000", "give the address alone, ::1, and --port 8000"),
                       ("[::1]", "give it bare: ::1"), ("http://127.0.0.1", "is a URL"),
                       (" 127.0.0.1", "give 127.0.0.1")]:
        r = runner.invoke(app, ["serve", "-c", str(tmp_path / "no-checkpoint"), "--host", host])
        assert r.exit_code == 2 and says in " ".join(re.sub("[│╭╮╰╯─]", " ", r.output).split()), (host, r.output)
    for host in ("127.0.0.1", "::1", "::", "0.0.0.0", "localhost", "fe80::1%eth0", "192.168.1.20", "bbu-box.local"):
        assert host_problem(host) is None, host
    assert is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("0.0.0.0")
