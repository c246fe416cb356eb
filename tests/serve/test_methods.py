"""Methods and paths the routes do not take, over real HTTP: HEAD answers as GET does, without a body; a wrong
method or an unknown path is a JSON error naming what was asked and what the route takes."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def method_server(engine, keys):
    from bbuvl.serve.app import ServeSettings, create_app
    from tests.serve.conftest import running

    with running(create_app(engine, keys, ServeSettings())) as client:
        yield client


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/", "/static/app.js", "/font/cjk"])
def test_head_answers_as_get_does_without_a_body(method_server, path):
    get = method_server.request("GET", path)
    head = method_server.request("HEAD", path)
    assert head.status == get.status, head.status  # 405 before on every route but /static: a monitor saw it down
    assert head.body == b"" and head.headers["content-type"] == get.headers["content-type"]
    assert method_server.request("HEAD", path, key=False).status == (200 if path == "/healthz" else 401)


def test_a_wrong_method_names_what_the_route_takes(method_server):
    for method, path, allowed in (("PUT", "/v1/detect", "POST"), ("DELETE", "/healthz", "GET, HEAD"),
                                  ("GET", "/v1/chat/completions", "POST"), ("OPTIONS", "/readyz", "GET, HEAD")):
        r = method_server.request(method, path)
        assert r.status == 405 and r.headers["allow"] == allowed, (method, path, r.headers)
        error = r.json()["error"]
        assert error["kind"] == "method_not_allowed"
        # "Method Not Allowed" before, naming neither the request nor the methods the route takes
        assert error["message"] == f"{method} {path}: this route takes {allowed} only", error


def test_an_unknown_path_is_named_in_its_404(method_server):
    for path in ("/v1/detection", "/static/../../etc/passwd", "/static/%2e%2e/app.py", "/x" * 5000):
        r = method_server.request("GET", path)
        assert r.status == 404 and r.json()["error"]["kind"] == "not_found", path
        message = r.json()["error"]["message"]
        assert message.startswith("GET /") and "no such route" in message and len(message) < 300, message


def test_a_path_with_a_trailing_slash_is_a_404_naming_the_route_not_a_redirect_to_the_host_header(method_server, photos):
    from tests.serve.client import multipart

    body, ctype = multipart("image", photos[0].name, photos[0].read_bytes())
    for method, path, route in (("POST", "/v1/detect/", "/v1/detect"), ("GET", "/readyz/", "/readyz")):
        r = method_server.request(method, path, body if method == "POST" else None,
                                  {"Host": "evil.example", **({"Content-Type": ctype} if method == "POST" else {})})
        # 307 to http://evil.example/v1/detect before: a Location built from the client's Host header
        assert r.status == 404 and "location" not in r.headers, (path, r.status, r.headers)
        assert f"the route is {route}, without the last '/'" in r.json()["error"]["message"], r.json()
    assert method_server.request("GET", "/static", headers={"Host": "evil.example"}).status == 404


def test_options_asterisk_names_the_servers_methods_and_asterisk_is_refused_with_any_other_method(method_server):
    from tests.serve.client import exchange

    for key in (b"", f"Authorization: Bearer {method_server.key}\r\n".encode()):
        answer = exchange(method_server.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n" + key + b"Connection: close\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        # a JSON 404 "OPTIONS *: no such route" before (with the key; a 401 without): the server in general is no route
        assert head.startswith(b"HTTP/1.1 204 No Content\r\n"), answer
        assert b"\r\nallow: GET, HEAD, POST\r\n" in head + b"\r\n", head
        assert body == b""
    answer = exchange(method_server.port, b"GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert json.loads(body)["error"] == {"kind": "bad_request", "message": "GET *: the target '*' is for OPTIONS "
                                         "alone (the server in general); name a route, e.g. GET /readyz"}


@pytest.mark.parametrize("path", ["/static/app.js/", "/static//app.js", "/static/./app.js", "/static/app.js//"])
def test_a_page_file_asked_with_a_trailing_slash_or_an_empty_or_dot_segment_is_a_404_as_a_route_is(method_server, path):
    r = method_server.request("GET", path)
    # the file, 200, before: /readyz/ was a 404 while /static/app.js/ served app.js
    assert r.status == 404 and r.json()["error"]["kind"] == "not_found", (path, r.status)
    if path == "/static/app.js/":
        assert "the file is /static/app.js, without the last '/'" in r.json()["error"]["message"], r.json()
    assert method_server.request("GET", "/static/app.js").status == 200
