"""A request whose client leaves while its photo waits or computes: answered 499 at once, its photo dropped.

uvicorn tells an app its client left only when the app asks for more of the request (`receive`), which a route
waiting on the model never does, and a client that closes its connection sends a FIN, which the server keeps open
after (server.py: the client may only have closed its sending side). Such a request was counted and logged as a 200
nobody read, and its photo, still queued, was computed for nobody. A FIN once the request is in is taken as the
client leaving, as nginx and Go's server take it: the server cannot tell a closed connection from a half-closed one
until it writes. docs/serving.md, "Slow and vanishing clients".
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

from fastapi import Request

from bbuvl.serve.errors import ApiError

T = TypeVar("T")
# The ASGI scope extension server.py sets when the client's FIN comes with the request all in and unanswered
SENDING_CLOSED = "bbuvl.sending_closed"


async def unless_gone(request: Request, work: Awaitable[T]) -> T:
    """The result of `work`, or ApiError 499 (client_disconnected) as soon as the client leaves, `work` then cancelled
    (a photo still queued is dropped; a batch already computing finishes). Call it once the whole body is read."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_left(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server is stopping: both go with the request
        task.cancel()
        watch.cancel()
        raise
    if task.done():
        watch.cancel()
        return task.result()
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: an error it met on its way out is no one's to see
    raise ApiError(499, "client_disconnected", "the client closed its connection (or its sending side) before the "
                   "answer was ready, so its photo was dropped: keep the connection open both ways until the answer comes")


async def _left(request: Request) -> None:
    """Return once the client has closed its connection, or its sending side (the whole body was read: nothing but
    `http.disconnect` comes from `receive` any more)."""
    closed = request.scope.get("extensions", {}).get(SENDING_CLOSED)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    waits = [asyncio.ensure_future(disconnected())]
    if closed is not None:
        waits.append(asyncio.ensure_future(closed.wait()))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
