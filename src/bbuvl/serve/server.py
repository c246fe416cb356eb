"""Running an app under uvicorn with graceful shutdown: SIGTERM stops accepting, drains, and the process exits 0.

uvicorn closes its listening socket on SIGTERM or SIGINT, lets every open request finish (up to
`drain_s`), then runs the app's lifespan shutdown, which stops the batcher once its queue is empty. It
then re-raises the signal it caught; a no-op handler installed here turns that into a normal return, so
a drained server exits 0 rather than dying by the signal.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
from typing import Any

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (port 0: a free one, read it back with `getsockname()`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as e:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if e.errno == errno.EADDRINUSE:  # two servers never share a port: the second would never see a request
            raise OSError(e.errno, f"{where}: another server (another `bbuvl serve`?) is listening there; stop it or "
                                   "choose another --port") from None
        raise OSError(e.errno, f"{where}: cannot listen there ({e.strerror or e})") from None


def serve_app(app: Any, sock: socket.socket, drain_s: float = 60.0, log_level: str = "info") -> None:
    """Serve `app` on a bound socket until SIGTERM/SIGINT, then drain open requests and return."""
    config = uvicorn.Config(app, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=int(drain_s) + 1, lifespan="on", server_header=False)
    server = uvicorn.Server(config)
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: caught.append(s)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        logging.getLogger("bbuvl.serve").info("drained and stopped on %s", signal.Signals(caught[-1]).name)
