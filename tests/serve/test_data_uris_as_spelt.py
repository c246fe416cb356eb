"""A data: URI's scheme is case-insensitive (RFC 3986) and a client may leave white space around it: /v1/detect took
'DATA:image/jpeg;base64,...' where /v1/chat/completions refused it as a URL the server would have to fetch, and a
leading space made the URI 'not valid base64' on /v1/detect and a URL on chat. Both routes now take the same URI."""

from __future__ import annotations

import base64
import json

import pytest

JSON = {"Content-Type": "application/json"}
SPELLINGS = ["DATA:image/png;base64,", "Data:Image/PNG;Base64,", " data:image/png;base64,", "\n data:image/png;base64,"]


@pytest.fixture(scope="module")
def server(engine, keys):
    from bbuvl.serve.app import ServeSettings, create_app
    from tests.serve.conftest import running

    with running(create_app(engine, keys, ServeSettings())) as client:
        yield client


@pytest.mark.parametrize("prefix", SPELLINGS)
def test_both_routes_take_a_data_uri_as_spelt(server, photos, prefix):
    uri = prefix + base64.b64encode(photos[0].read_bytes()).decode()
    detect = server.request("POST", "/v1/detect", json.dumps({"image": uri}).encode(), JSON)
    assert detect.status == 200, detect.body
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}}]}]}
    chat = server.request("POST", "/v1/chat/completions", json.dumps(body).encode(), JSON)
    # Before: 400 url_not_allowed, "only data: URIs are accepted ... the server never fetches a URL"
    assert chat.status == 200, chat.body
    assert chat.json()["choices"][0]["message"]["role"] == "assistant"


def test_a_url_after_white_space_is_named_a_url(server):
    detect = server.request("POST", "/v1/detect", json.dumps({"image": "  https://example.com/a.jpg"}).encode(), JSON)
    # Before: 400 bad_base64, "'image' is not valid base64"
    assert detect.status == 400 and detect.json()["error"]["kind"] == "url_not_allowed", detect.body
