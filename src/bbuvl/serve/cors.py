"""Browser calls from the `--cors-origin` origins: Starlette's CORS, with its preflight answers made the server's own.

An accepted preflight is a 204 with the `Access-Control-*` headers and no body; a refused one is a 403 in the JSON
error shape of errors.py naming what the browser asked that is not allowed, where Starlette answered a text 400
("Disallowed CORS origin"). docs/serving.md, "Errors".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from bbuvl.serve.errors import ApiError, cut
from bbuvl.serve.guard import answered, error_response
from bbuvl.serve.metrics import ServeMetrics

METHODS = ["GET", "POST"]
HEADERS = ["Authorization", "Content-Type"]


class Cors(CORSMiddleware):
    """CORS for `origins`, answering preflights as the rest of the server answers (204, or the JSON error shape)."""

    def __init__(self, app: Any, origins: list[str], metrics: ServeMetrics):
        super().__init__(app, allow_origins=origins, allow_methods=METHODS, allow_headers=HEADERS)
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        """A preflight answered here, outside `Guard` (it carries no key), counted, logged and given the server's
        headers as Guard gives every other answer: its refusals were in bbuvl_errors_total and in no request count or
        log line. Any other request goes through."""
        headers = Headers(scope=scope) if scope["type"] == "http" else None
        if headers is None or not (scope["method"] == "OPTIONS" and "origin" in headers
                                   and "access-control-request-method" in headers):
            await super().__call__(scope, receive, send)
            return
        await answered(super().__call__, scope, receive, send, self.metrics)

    def preflight_response(self, request_headers: Headers) -> Response:
        """Starlette's answer to a preflight, as a bodiless 204 when it accepts it, else a JSON 403 naming why."""
        answer = super().preflight_response(request_headers)
        headers = {k: v for k, v in answer.headers.items() if k not in ("content-length", "content-type")}
        if answer.status_code < 400:
            return Response(status_code=204, headers=headers)
        refused = _refusals(request_headers, answer.body.decode("latin-1"))
        return error_response(ApiError(403, "cors_refused", f"CORS preflight refused: {'; '.join(refused)}", headers),
                              self.metrics)


def origin_problem(origin: str) -> str | None:
    """Why `origin` can never equal the `Origin` header a browser sends (None when it can): a browser sends
    `scheme://host[:port]` in lower case, without a path or a default port, and CORS compares it as typed, so
    `https://app.example.com/` allowed nothing and every preflight was refused."""
    if origin in ("*", "null"):  # every origin; a page opened from a file
        return None
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError as e:
        return f"'{origin}' is not an origin ({e}); give scheme://host[:port], e.g. https://app.example.com"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"'{origin}' is not an origin; give scheme://host[:port], e.g. https://app.example.com"
    scheme = parts.scheme.lower()
    try:  # a browser sends a name in another script as its ASCII (punycode) form: https://xn--fsqu00a.cn
        host = parts.hostname.encode("idna").decode("ascii") if not parts.hostname.isascii() else parts.hostname
    except UnicodeError:
        return f"'{origin}' is not an origin (its host is no domain name); give scheme://host[:port]"
    host = f"[{host}]" if ":" in host else host
    sent = f"{scheme}://{host}" + (f":{port}" if port is not None and port != {"http": 80, "https": 443}[scheme] else "")
    if sent != origin:
        return (f"'{origin}' is not what a browser sends as its Origin (scheme://host[:port], lower case, no path, no "
                f"default port), so it would allow nothing; give {sent}")
    return None


def _refusals(request: Headers, starlette_says: str) -> list[str]:
    """What a refused preflight asked that is not allowed, each with its value, from Starlette's own list of them."""
    named = {w.strip() for w in starlette_says.removeprefix("Disallowed CORS").split(",")}
    why = {"origin": f"origin '{cut(request.get('origin', ''))}' is not one of --cors-origin",
           "method": f"method '{cut(request.get('access-control-request-method', ''))}' is not one of "
                     f"{', '.join(METHODS)}",
           "headers": f"headers '{cut(request.get('access-control-request-headers', ''))}' are not all among "
                      f"{', '.join(HEADERS)} and the CORS-safelisted ones",
           "private-network": "private network access is not allowed"}
    return [why[w] for w in why if w in named] or [cut(starlette_says)]
