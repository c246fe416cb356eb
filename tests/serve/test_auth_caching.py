"""What a proxy or a browser may keep of the server's answers: nothing that took the key to get, but the page's files,
in the browser alone and asked again each time (docs/serving.md, "Authentication and logs")."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def server(engine, keys):
    from bbuvl.serve.app import ServeSettings, create_app
    from tests.serve.conftest import running

    with running(create_app(engine, keys, ServeSettings())) as client:
        yield client


@pytest.mark.parametrize("path,key", [("/", False), ("/static/app.js", False), ("/v1/detect", False),
                                      ("/metrics", True), ("/readyz", True), ("/healthz", False), ("/nowhere", True)])
def test_an_answer_no_proxy_may_keep_says_no_store(server, path, key):
    # none before: a proxy that stores what RFC 9111 asks it not to (an answer to a request with a key) had nothing
    # telling it otherwise, and a 401's challenge or a photo's findings could be kept in a browser's disk cache
    r = server.request("GET", path, key=key)
    assert r.headers["cache-control"] == "no-store", (path, r.status)


def test_a_photos_findings_are_no_store(server, photos):
    r = server.detect_file(photos[0])
    assert r.status == 200 and r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/style.css"])
def test_the_pages_files_are_kept_by_the_browser_alone_and_asked_again(server, path):
    r = server.request("GET", path)
    assert r.status == 200 and r.headers["cache-control"] == "private, no-cache"
    if path.startswith("/static/"):  # a static file is asked again as a 304 when the browser's copy is current
        again = server.request("GET", path, headers={"If-None-Match": r.headers["etag"]})
        assert again.status == 304 and again.headers["cache-control"] == "private, no-cache"


def test_the_font_kept_a_day_is_kept_by_the_browser_alone(server):
    r = server.request("GET", "/font/cjk")
    if r.status == 404:
        pytest.skip("no CJK font on this machine")
    assert r.headers["cache-control"] == "private, max-age=86400"
