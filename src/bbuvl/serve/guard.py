"""The API key on every route but `/healthz`, then a metric and a log line per request (never a header or body).

The page's own routes (`/`, `/static/...`, `/font/cjk`) need the key too. A browser cannot add a Bearer
header when it opens a page, so their 401 carries a Basic challenge: the browser asks for the key itself (any
user name, the key as password), keeps it in its in-memory credential cache and sends it with the page's
files and the page's own requests to this server. The API routes' 401 says `Bearer`, so a script is never
answered with a browser prompt's challenge. docs/serving.md, "Authentication and logs".
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from urllib.parse import parse_qsl, quote
from typing import Any

from fastapi.responses import JSONResponse, Response

from bbuvl.data.text import show_text
from bbuvl.serve.auth import KeyStore
from bbuvl.serve.errors import ApiError, cut
from bbuvl.serve.metrics import ServeMetrics

OPEN_PATHS = ("/healthz",)
PAGE_PATHS = ("/", "/font/cjk")  # and everything under /static/
BASIC_CHALLENGE = 'Basic realm="bbu-vl", charset="UTF-8"'
KEY_NAMES = ("key", "api_key", "apikey", "api-key", "token", "access_token", "auth")  # where a key may be put by mistake
ROUTES = ("/healthz", "/readyz", "/metrics", "/v1/detect", "/v1/chat/completions", "/", "/font/cjk")
METHODS = ("GET", "HEAD", "POST")  # every method some route takes: what `OPTIONS *` names
# On every answer: a file is taken as the type it is served as, no address is sent onward, and what is shown may run
# only this server's own script and styles, show its own pictures and the photos the user dropped (blob:), and sit in
# no other site's frame. The page draws labels and file names from answers: none of them can ever run as script
# (docs/serving.md, "The page").
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
                                 b"form-action 'none'; frame-ancestors 'none'"),
]
# Every answer but the page's files is this key's own (a photo's findings, a 401's challenge, the metrics): a proxy or
# a browser's disk keeps none of them. The page's files may be kept by the browser alone, and asked again each time, so
# a proxy never hands the page to someone who gave no key (docs/serving.md, "Authentication and logs").
NO_STORE = b"no-store"
PAGE_CACHE = b"private, no-cache"
logger = logging.getLogger("bbuvl.serve")
# Where the server's protocol (server.py) puts the perf_counter time a request's first byte came: its log line and
# latency count from there, its headers' and body's arrival included
REQUEST_BEGAN = "bbuvl.request_began"


def _cache_control(path: str, status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with a Cache-Control: the route's own made `private` (never a shared cache's), else the default."""
    own = [v for k, v in headers if k.lower() == b"cache-control"]
    rest = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
    if own and b"private" not in own[0] and b"no-store" not in own[0]:
        value = b"private, " + own[0]
    elif own:
        value = own[0]
    else:
        value = PAGE_CACHE if _is_page(path) and status < 400 else NO_STORE
    return [*rest, (b"cache-control", value)]


def _is_page(path: str) -> bool:
    """True for the page and its files, which a browser loads without a script's help."""
    return path in PAGE_PATHS or path.startswith("/static/")


def _unauthorized(path: str, query: bytes = b"") -> ApiError:
    """The 401 for `path`: a Basic challenge for the page's routes (the browser asks for the key), else Bearer; it says
    so when `query` holds what looks like the key, which is never read there."""
    named = [name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if name.lower() in KEY_NAMES]
    # an address is written to proxies' logs and browsers' history: a key there is leaked, so it is not taken
    where = f"; a key in the address ('?{cut(named[0])}=') is not read: it would end up in logs" if named else ""
    if _is_page(path):
        return ApiError(401, "unauthorized", f"missing or wrong API key: give any user name and the API key as password"
                        f"{where}", {"WWW-Authenticate": BASIC_CHALLENGE})
    return ApiError(401, "unauthorized", f"missing or wrong API key: send 'Authorization: Bearer KEY'{where}",
                    {"WWW-Authenticate": "Bearer"})


def _route_name(path: str) -> str:
    """A bounded label for metrics: a known route, `/static`, or `other`."""
    return path if path in ROUTES else "/static" if path.startswith("/static/") else "other"


class Guard:
    """ASGI middleware: the API key on every route but `/healthz`, then metrics and a log line per request.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which costs an extra task and stream per request.
    """

    def __init__(self, app: Any, keys: KeyStore, metrics: ServeMetrics):
        self.app, self.keys, self.metrics = app, keys, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await answered(self._checked, scope, receive, send, self.metrics)

    async def _checked(self, scope: dict, receive: Any, send: Any) -> None:
        """The request answered by its route once its key is accepted, else by the error its request line earns."""
        path = scope["path"]
        if not scope.get("http_version", "1.1").startswith("1."):
            await _wrong_version(scope["http_version"], self.metrics)(scope, receive, send)
        elif path == "*":
            await _server_wide(scope["method"], self.metrics)(scope, receive, send)
        elif path in OPEN_PATHS or self.keys.accepts(_header(scope, b"authorization")):
            await self.app(scope, receive, send)
        else:
            await error_response(_unauthorized(path, scope["query_string"]), self.metrics)(scope, receive, send)


async def answered(app: Any, scope: dict, receive: Any, send: Any, metrics: ServeMetrics) -> None:
    """Answer one HTTP request with the ASGI `app`, its answer given the server's headers, then count and log it."""
    start, status, begun = scope.get("extensions", {}).get(REQUEST_BEGAN) or time.perf_counter(), [500], [False]

    async def watched(message: dict) -> None:
        if message["type"] == "http.response.start":
            status[0], begun[0] = message["status"], True
            message = _with_server_headers(message, scope["path"])
        await send(message)

    try:
        await app(scope, receive, watched)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if begun[0] or task is None:
            raise
        # uvicorn cancels a request still unanswered when the drain at shutdown ends, and a second Ctrl-C cancels
        # every one: the client's to send again, not a text 500 and a traceback (docs/serving.md, "Shutdown")
        task.uncancel()
        await error_response(_stopped(), metrics)(scope, receive, watched)
    finally:
        account(metrics, scope, status[0], start)


def _with_server_headers(message: dict, path: str) -> dict:
    """An `http.response.start` message with the server's own headers added: caching, and the security headers."""
    headers = _cache_control(path, message["status"], list(message.get("headers", [])))
    return {**message, "headers": [*headers, *SECURITY_HEADERS]}


def account(metrics: ServeMetrics, scope: dict, status: int, start: float) -> None:
    """Count one answered request (its route and status, its latency since `start`) and log its line."""
    seconds = time.perf_counter() - start
    route = _route_name(scope["path"])
    metrics.requests.labels(route, str(status)).inc()
    metrics.latency.labels(route).observe(seconds)
    client = scope.get("client") or ("-",)
    logger.info("%s %s %s %d %.1f ms", _loggable_client(client[0]), scope["method"], _loggable(scope["path"]), status,
                seconds * 1000)


def _stopped() -> ApiError:
    """The 503 of a request the server stopped before answering: its drain (--timeout) ended, or it was forced."""
    return ApiError(503, "not_ready", "the server stopped before this request was answered (its drain, --timeout, "
                    "ended, or a second Ctrl-C forced it); send it again", {"Retry-After": "1", "Connection": "close"})


def _server_wide(method: str, metrics: ServeMetrics) -> Response:
    """The answer to a request for `*`, the server in general rather than a resource: for OPTIONS, a bodiless 204
    naming the methods the server takes (no key: it tells what any 405 tells); for another method, a 400."""
    # `OPTIONS *` is HTTP's ping of a server; the routes found no '*' and answered a JSON 404 (docs/serving.md, "Routes")
    if method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": ", ".join(METHODS)})
    return error_response(ApiError(400, "bad_request", f"{cut(method, 20)} *: the target '*' is for OPTIONS alone (the "
                                   "server in general); name a route, e.g. GET /readyz"), metrics)


def _wrong_version(version: str, metrics: ServeMetrics) -> JSONResponse:
    """The 505 of a request in HTTP/2 or later, which h11 reads as if it were HTTP/1.1 (docs/serving.md, "Routes")."""
    # `curl --http2-prior-knowledge` opens with "PRI * HTTP/2.0" and binary frames: answered as the '*' of another
    # method before, then a 400 for the frames; the connection is closed, as nothing after it is HTTP/1.1
    return error_response(ApiError(505, "http_version_not_supported", f"the request is HTTP/{cut(version, 10)}; this "
                                   "server speaks HTTP/1.1 (and 1.0) only: send HTTP/1.1, or put a proxy that speaks "
                                   "HTTP/2 in front", {"Connection": "close"}), metrics)


def _loggable(path: str) -> str:
    """`path` as the log shows it: any client sends any path, and one holding a line end (`%0a`) or an ESC would write
    a forged log line or drive the terminal reading the log, so such characters are escaped, and a space (`%20`) is
    logged as `%20`, so the path stays one field of its line; a long one is cut."""
    return cut((path if path.isprintable() else show_text(path)).replace(" ", "%20"), 300)


def _loggable_client(host: str) -> str:
    """The client's address as the log shows it: uvicorn takes it from `X-Forwarded-For` when a proxy on this machine
    sends one, and any local process may send any text there ('6.6.6.6 POST /v1/detect 200 1.0 ms'), which read as
    the fields of another request; text that is no IP address is shown percent-encoded after `forwarded:`."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        return "-" if host == "-" else "forwarded:" + cut(quote(host.encode("latin-1", "replace"), safe=":."), 100)


def _header(scope: dict, name: bytes) -> str | None:
    """The first value of header `name` (lower case) in an ASGI scope."""
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)


def error_response(e: ApiError, metrics: ServeMetrics) -> JSONResponse:
    """The JSON answer for `e`, counted under its kind."""
    metrics.errors.labels(e.kind).inc()
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)
