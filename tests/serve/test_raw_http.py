"""Bytes that are not a valid HTTP/1.1 request, sent over raw sockets: each is answered with the JSON error shape
saying what is wrong, and the server goes on."""

from __future__ import annotations

import json
import re
from http import HTTPStatus

import pytest

from bbuvl.serve.server import FREE_PIECES
from tests.serve.client import exchange
from tests.serve.conftest import API_KEY

AUTH = f"Authorization: Bearer {API_KEY}\r\n".encode()
BROKEN = {
    "no_host": (b"GET /readyz HTTP/1.1\r\n" + AUTH + b"\r\n", 400, "Host"),
    "two_lengths": (b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: image/png\r\nContent-Length: 5\r\n"
                    b"Content-Length: 6\r\n\r\nabcdef", 400, "conflicting Content-Length"),
    "a_chunk_size_not_hex": (b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: image/png\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, "chunk"),
    "tls_to_a_plain_port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n", 400, "request line"),
    # 200 before: h11 checks that there is one Host, not what it holds
    "a_host_that_is_no_host": (b"GET /readyz HTTP/1.1\r\nHost: a b/c\r\n" + AUTH + b"\r\n", 400, "'a b/c' is not a host"),
    # 401 with the wrong key first, 200 with the right one first, before: the first was read, a proxy may check the last
    "two_keys": (b"GET /readyz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-key-0123456789\r\n" + AUTH + b"\r\n", 400,
                 "2 Authorization headers"),
    "two_keys_the_right_one_first": (b"GET /readyz HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Authorization: Bearer wrong\r\n\r\n",
                                     400, "2 Authorization headers"),
    # answered as a PNG before, the multipart type dropped
    "two_content_types": (b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: image/png\r\nContent-Type: "
                          b"multipart/form-data; boundary=b\r\nContent-Length: 3\r\n\r\nabc", 400, "2 Content-Type headers"),
    "headers_over_the_limit": (b"GET /readyz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 40_000, 431, "exceed"),
    # answered as chunked before (h11 drops the length): a proxy reading the length would take the rest as a request
    "a_length_and_chunks": (b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: image/png\r\n"
                            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400,
                            "both Content-Length and Transfer-Encoding"),
    # a 404 "GET /readyz: no such route" before, naming a route that exists: uvicorn took "readyz" as the path
    "a_target_that_is_no_path": (b"GET readyz HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n", 400,
                                 "the request target 'readyz' is no path"),
    "a_query_without_a_path": (b"GET ?x=1 HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n", 400,
                               "the request target '?x=1' is no path"),
    "connect_to_a_server_that_is_no_proxy": (b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n" + AUTH + b"\r\n", 400,
                                             "'x:443' is no path"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_bytes_that_are_not_http_get_a_json_error_naming_why(serve, case):
    client = serve()
    data, status, named = BROKEN[case]
    answer = exchange(client.port, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == str(status).encode(), answer
    assert head.split(b"\r\n")[0] == f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()  # no reason before
    # text/plain "Invalid HTTP request received." before, naming nothing
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)["error"]
    assert error["kind"] == "bad_request" and named in error["message"], error
    assert client.request("GET", "/readyz").status == 200


def test_a_websocket_upgrade_is_a_plain_request_that_needs_the_key(serve):
    client = serve()
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
               "Sec-WebSocket-Version": "13"}
    r = client.request("GET", "/readyz", headers=upgrade, key=False)
    # a bodiless 403 from the WebSocket side before, the request never seen by the key check, log or metrics
    assert r.status == 401 and r.json()["error"]["kind"] == "unauthorized", (r.status, r.body)
    assert client.request("GET", "/readyz", headers=upgrade).status == 200
    assert 'bbuvl_requests_total{route="/readyz",status="401"} 1.0' in client.request("GET", "/metrics").body.decode()


def test_a_transfer_encoding_other_than_chunked_is_a_501_saying_so(serve):
    client = serve()
    answer = exchange(client.port, b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: image/png\r\n"
                                   b"Transfer-Encoding: gzip, chunked\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501 Not Implemented\r\n"), answer
    error = json.loads(body)["error"]
    # kind bad_request, "not valid HTTP/1.1", before: the request is valid, the server does not take it
    assert error["kind"] == "not_implemented" and "chunked" in error["message"], error


@pytest.mark.parametrize("target", ["http://x/readyz", "HTTP://x:8000/readyz?probe=1", "https://elsewhere.example/readyz"])
def test_a_request_in_absolute_form_reaches_its_route(serve, target):
    client = serve()
    answer = exchange(client.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n".encode() + AUTH + b"Connection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"200", answer  # 404 "GET /http://x/readyz" before
    assert json.loads(body)["ready"] is True


def test_a_body_in_tiny_chunks_is_refused_and_one_in_blocks_is_answered(serve, photos):
    client = serve()
    head = b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    data = photos[0].read_bytes()
    answer = exchange(client.port, head + b"".join(b"1\r\n%c\r\n" % b for b in data[:5000]) + b"0\r\n\r\n")
    head_out, _, body = answer.partition(b"\r\n\r\n")
    assert head_out.split()[1] == b"400", answer
    # parsed chunk by chunk before (1 MB of them held the event loop for 21 s), then answered not_an_image
    error = json.loads(body)["error"]
    assert error["kind"] == "body_in_tiny_pieces", error
    assert int(re.search(r"came in (\d+) pieces", error["message"]).group(1)) == FREE_PIECES + 1, error  # cut there
    # Counted as the 400 it was answered with: a 499 client_disconnected before, the route having seen the close
    metrics = client.request("GET", "/metrics").body.decode()
    assert 'bbuvl_requests_total{route="/v1/detect",status="400"} 1.0' in metrics and 'status="499"' not in metrics
    assert 'bbuvl_errors_total{kind="body_in_tiny_pieces"} 1.0' in metrics, metrics
    blocks = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 500]), data[i:i + 500]) for i in range(0, len(data), 500))
    answer = exchange(client.port, head + blocks + b"0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.count(b"HTTP/1.1 200 OK") == 2, answer[:300]


@pytest.mark.parametrize("host", ["", "example.com", "example.com:8000", "127.0.0.1:80", "[::1]:8000", "xn--fsq.example"])
def test_every_form_of_host_is_taken(serve, host):
    client = serve()
    answer = exchange(client.port, f"GET /readyz HTTP/1.1\r\nHost: {host}\r\n".encode() + AUTH + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK"), answer


@pytest.mark.parametrize("data", [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00",
                                  b"GET /readyz HTTP/2.0\r\nHost: x\r\n" + AUTH + b"\r\n"])
def test_a_request_in_another_http_version_than_1_is_a_505_saying_the_server_speaks_http_1_1(serve, data):
    client = serve()
    answer = exchange(client.port, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    # a 401 (with the key, a 404 "PRI *: no such route"; a 200 for GET) before, then a 400 for the frames that followed
    assert head.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n"), answer
    assert json.loads(body)["error"] == {"kind": "http_version_not_supported", "message": "the request is HTTP/2.0; this "
                                         "server speaks HTTP/1.1 (and 1.0) only: send HTTP/1.1, or put a proxy that "
                                         "speaks HTTP/2 in front"}
    assert client.request("GET", "/readyz").status == 200


def test_a_client_that_closes_its_sending_side_gets_an_answer_at_once_and_a_499_for_a_photo_it_left(serve, photos):
    import socket

    from tests.serve.client import multipart

    client = serve()
    body, ctype = multipart("image", photos[0].name, photos[0].read_bytes())
    for request, status in ((b"GET /readyz HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n", b"200 OK"),
                            (b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n" + AUTH + f"Content-Type: {ctype}\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body, b"499 ")):
        with socket.create_connection(("127.0.0.1", client.port), timeout=10) as s:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)  # `nc -N`, or a script done writing: half closed, still reading
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        # nothing before: the server closed the connection on the client's FIN, and the answer was never sent. A FIN
        # while a photo waits for the model is the client leaving (its photo dropped), as nginx takes it: the server
        # cannot tell it from a half close until it writes, and a client that leaves is far the commoner
        assert answer.startswith(b"HTTP/1.1 " + status + b"\r\n"), answer
        answered = json.loads(answer.partition(b"\r\n\r\n")[2])  # the whole answer, then the server closed the connection
        if status == b"499 ":
            assert answered["error"]["kind"] == "client_disconnected"
            assert "or its sending side" in answered["error"]["message"], answered


KEY = API_KEY.encode()
QUOTED = {
    # a key file saved with Windows line ends: `-H "Authorization: Bearer $(cat key.txt)"` sends the CR
    "a_key_with_a_cr": (b"Authorization: Bearer " + KEY + b"\r\r\n", f"'Authorization' holds byte 0x0D at byte {len(b'Bearer ' + KEY) + 1} of its value"),
    "a_key_with_a_nul": (b"Authorization: Bearer " + KEY + b"\x00\r\n", "'Authorization' holds byte 0x00"),
    "a_key_with_a_vertical_tab": (b"Authorization: Bearer " + KEY + b"\x0b\r\n", "'Authorization' holds byte 0x0B"),
    "a_name_with_a_space": (b"Auth orization: Bearer " + KEY + b"\r\n", "no 'Name: value'"),
    "a_line_without_a_name": (b"Bearer " + KEY + b"\r\n", "no 'Name: value'"),
}


@pytest.mark.parametrize("case", sorted(QUOTED))
def test_a_header_line_http_refuses_is_named_without_echoing_its_key(serve, case):
    client = serve()
    line, named = QUOTED[case]
    answer = exchange(client.port, b"GET /readyz HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    # "illegal header line: bytearray(b'Authorization: Bearer KEY\\r')" before: the key in the answer, which proxies
    # in front keep in their logs
    assert KEY not in answer and KEY[:12] not in answer, answer
    error = json.loads(body)["error"]
    assert error["kind"] == "bad_request" and named in error["message"], error
    assert client.request("GET", "/readyz").status == 200


def test_a_request_line_http_refuses_is_named_without_its_query(serve):
    client = serve()
    answer = exchange(client.port, b"GET /readyz?key=" + KEY + b" HTTP/1.1 x\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and KEY not in answer, answer
    error = json.loads(body)["error"]
    assert error["kind"] == "bad_request" and "illegal request line: 'GET /readyz?... HTTP/1.1 x'" in error["message"], error
