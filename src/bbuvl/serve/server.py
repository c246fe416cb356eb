"""Running an app under uvicorn with graceful shutdown: SIGTERM stops accepting, drains, and the process exits 0.

uvicorn closes its listening socket on SIGTERM or SIGINT, lets every open request finish (up to
`drain_s`), then runs the app's lifespan shutdown, which stops the batcher once its queue is empty. It
then re-raises the signal it caught; a no-op handler installed here turns that into a normal return, so
a drained server exits 0 rather than dying by the signal.
"""

from __future__ import annotations

import logging
import signal
import socket
from typing import Any

import uvicorn


def serve_app(app: Any, host: str = "127.0.0.1", port: int = 8000, drain_s: float = 60.0,
              sock: socket.socket | None = None, log_level: str = "info") -> None:
    """Serve `app` until SIGTERM/SIGINT, then drain open requests and return."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=int(drain_s) + 1, lifespan="on", server_header=False)
    server = uvicorn.Server(config)
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: caught.append(s)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock] if sock is not None else None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        logging.getLogger("bbuvl.serve").info("drained and stopped on %s", signal.Signals(caught[-1]).name)
    if not server.started:
        raise OSError(f"the server could not start on {host}:{port} (address in use, or not allowed?)")
