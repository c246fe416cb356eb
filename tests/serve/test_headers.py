"""Requests whose headers ask for what the server will not give (a CORS preflight it refuses, a Range past the end of
a file): each is answered with the JSON error shape, or with what HTTP prescribes, never with a text body."""

from __future__ import annotations

import pytest

ORIGIN = "https://inspect.example"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}
REFUSED = {  # what changes from an accepted preflight, and what the message must name
    "an_origin_not_allowed": ({"Origin": "https://evil.example"}, "origin 'https://evil.example' is not one of --cors-origin"),
    "a_method_not_allowed": ({"Access-Control-Request-Method": "PUT"}, "method 'PUT' is not one of GET, POST"),
    "a_header_not_allowed": ({"Access-Control-Request-Headers": "x-debug"}, "headers 'x-debug' are not all among"),
    "private_network_access": ({"Access-Control-Request-Private-Network": "true"}, "private network access"),
}


@pytest.fixture(scope="module")
def cors_server(engine, keys):
    from bbuvl.serve.app import ServeSettings, create_app
    from tests.serve.conftest import running

    with running(create_app(engine, keys, ServeSettings(cors_origins=[ORIGIN]))) as client:
        yield client


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refused_cors_preflight_is_a_json_403_naming_what_is_not_allowed(cors_server, case):
    changed, named = REFUSED[case]
    r = cors_server.request("OPTIONS", "/v1/detect", headers={**PREFLIGHT, **changed}, key=False)
    # a text/plain 400 "Disallowed CORS origin" before
    assert r.status == 403 and r.headers["content-type"] == "application/json", (r.status, r.body)
    error = r.json()["error"]
    assert error["kind"] == "cors_refused" and named in error["message"], error
    assert 'bbuvl_errors_total{kind="cors_refused"}' in cors_server.request("GET", "/metrics").body.decode()


def test_an_accepted_cors_preflight_is_a_bodiless_204_and_a_simple_request_gets_its_origin(cors_server):
    r = cors_server.request("OPTIONS", "/v1/detect", headers=PREFLIGHT, key=False)
    assert r.status == 204 and r.body == b"" and "content-type" not in r.headers, (r.status, r.headers, r.body)
    assert r.headers["access-control-allow-origin"] == ORIGIN and "POST" in r.headers["access-control-allow-methods"]
    get = cors_server.request("GET", "/readyz", headers={"Origin": ORIGIN})
    assert get.status == 200 and get.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize("path", ["/static/app.js", "/"])
def test_a_range_past_the_end_of_a_file_is_a_json_416_with_its_size(cors_server, path):
    size = len(cors_server.request("GET", path).body)
    r = cors_server.request("GET", path, headers={"Range": "bytes=99999999-"})
    # a bodiless text/plain 416 before
    assert r.status == 416 and r.headers["content-type"] == "application/json", (r.status, r.headers)
    assert r.headers["content-range"] == f"bytes */{size}"
    error = r.json()["error"]
    assert error["kind"] == "range_not_satisfiable" and "'bytes=99999999-'" in error["message"], error


@pytest.mark.parametrize("spec", ["items=0-5", "bytes", "bytes=5-2", "bytes=x-y"])
def test_a_range_in_an_unknown_unit_or_malformed_is_ignored_and_the_whole_file_sent(cors_server, spec):
    whole = cors_server.request("GET", "/static/app.js")
    r = cors_server.request("GET", "/static/app.js", headers={"Range": spec})
    # a text 400 ("Only support bytes range", "Malformed range header.") before: HTTP says to ignore an unknown unit
    assert r.status == 200 and r.body == whole.body, (spec, r.status, r.body[:100])


def test_a_range_within_the_file_is_still_its_bytes(cors_server):
    whole = cors_server.request("GET", "/static/app.js").body
    r = cors_server.request("GET", "/static/app.js", headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == whole[10:20] and r.headers["content-range"] == f"bytes 10-19/{len(whole)}"


@pytest.mark.parametrize("path,key", [("/", True), ("/static/app.js", True), ("/v1/detect", False), ("/healthz", False),
                                      ("/nowhere", True)])
def test_every_answer_holds_the_page_to_the_servers_own_script_and_out_of_other_sites_frames(cors_server, path, key):
    # none before: a label or file name that slipped into the page's markup could have run as script, and the page
    # could be framed by another site (tests/serve/test_page.py shows the page still works under the policy)
    r = cors_server.request("GET", path, key=key)
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_a_page_file_removed_while_the_server_runs_is_a_json_404(engine, keys, tmp_path):
    from bbuvl.serve.app import ServeSettings, create_app
    from bbuvl.serve.files import RangedFile
    from tests.serve.conftest import running

    font = tmp_path / "font.ttf"
    font.write_bytes(b"0" * 100)
    app = create_app(engine, keys, ServeSettings())

    @app.get("/v1/file")
    async def file() -> RangedFile:  # as /font/cjk answers with the font it found at its first request
        return RangedFile(font, media_type="font/ttf")

    with running(app) as client:
        assert client.request("GET", "/v1/file").body == b"0" * 100
        font.unlink()  # a font uninstalled while the server runs
        r = client.request("GET", "/v1/file")
        # a JSON 500 (RuntimeError "File at path ... does not exist") with a traceback in the log before
        assert r.status == 404 and r.json()["error"]["kind"] == "not_found", r.body
        assert "'font.ttf' is no longer on the server" in r.json()["error"]["message"]


def test_a_preflight_answered_or_refused_is_counted_and_given_the_servers_headers_as_every_other_answer(cors_server):
    # Before: answered outside the key check, a preflight was in no request count and had no security headers, while
    # a refused one was in bbuvl_errors_total: the two counters disagreed
    def count(status: int) -> float:
        for line in cors_server.request("GET", "/metrics").body.decode().splitlines():
            if line.startswith(f'bbuvl_requests_total{{route="/v1/detect",status="{status}"}}'):
                return float(line.split()[-1])
        return 0.0

    before = count(204), count(403)
    accepted = cors_server.request("OPTIONS", "/v1/detect", headers=PREFLIGHT, key=False)
    refused = cors_server.request("OPTIONS", "/v1/detect", headers={**PREFLIGHT, "Origin": "https://evil.example"},
                                  key=False)
    assert (accepted.status, refused.status) == (204, 403)
    assert (count(204), count(403)) == (before[0] + 1, before[1] + 1)
    for r in (accepted, refused):
        assert r.headers["x-content-type-options"] == "nosniff", r.headers
