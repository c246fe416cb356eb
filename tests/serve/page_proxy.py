"""A reverse proxy in front of a test server, as nginx is in production, for the page's tests: it passes every request
through, and hands each detection answer to the test, which may change it (a hostile label, a 502 page) or hold it
(an answer that comes late)."""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request
from typing import Callable

# (the request's body, the server's status, headers and body) -> what the page gets instead
Answer = Callable[[bytes, int, dict, bytes], tuple[int, dict, bytes]]
KEPT = ("content-type", "www-authenticate", "cache-control", "content-security-policy", "x-content-type-options")


class Proxy:
    """Serves on 127.0.0.1:`port` in a thread until `close()`; `posts_done` counts the detection answers it has
    finished sending (or failed to send: the page may have gone)."""

    def __init__(self, upstream: str, answer: Answer = lambda request, status, head, body: (status, head, body)):
        proxy = self
        self.posts_done = 0

        def forward(handler: http.server.BaseHTTPRequestHandler, body: bytes | None) -> tuple[int, dict, bytes]:
            keep = ("authorization", "accept", "content-type")
            headers = {k: v for k, v in handler.headers.items() if k.lower() in keep}
            try:
                with urllib.request.urlopen(urllib.request.Request(upstream + handler.path, data=body,
                                                                   headers=headers)) as r:
                    return r.status, dict(r.headers.items()), r.read()
            except urllib.error.HTTPError as e:
                return e.code, dict(e.headers.items()), e.read()

        def send(handler: http.server.BaseHTTPRequestHandler, status: int, head: dict, body: bytes) -> None:
            handler.send_response(status)
            for k, v in head.items():
                if k.lower() in KEPT:
                    handler.send_header(k, v)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                send(self, *forward(self, None))

            def do_POST(self) -> None:  # noqa: N802
                request = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    send(self, *answer(request, *forward(self, request)))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the page aborted the request
                finally:
                    proxy.posts_done += 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
