"""Running an app under uvicorn with graceful shutdown: SIGTERM (or SIGHUP) stops accepting, drains, and the process
exits 0.

uvicorn closes its listening socket on SIGTERM or SIGINT (and here on SIGHUP), lets every open request finish (up to
`drain_s`), then runs the app's lifespan shutdown, which stops the batcher once its queue is empty. It
then re-raises the signal it caught; a no-op handler installed here turns that into a normal return, so
a drained server exits 0 rather than dying by the signal.

uvicorn waits for a request's headers for ever: a client that opens connections and sends a header line now
and then (slowloris) would hold every one of them. `protocol` closes a connection whose headers are not all in
within the read timeout; bodies.py gives each piece of the body the same time, and the body as a whole a floor on its
average rate, which `protocol` applies too to a body the server answered before reading it (docs/serving.md, "Slow
and vanishing clients").
"""

from __future__ import annotations

import ast
import asyncio
import errno
import ipaddress
import json
import logging
import re
import signal
import socket
import time
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from bbuvl.serve.bodies import REFUSED_MID_BODY, Pace
from bbuvl.serve.errors import ApiError, cut
from bbuvl.serve.gone import SENDING_CLOSED
from bbuvl.serve.guard import REQUEST_BEGAN, account
from bbuvl.serve.metrics import ServeMetrics


def _raw(e: ApiError) -> bytes:
    """The raw HTTP answer, closing its connection, of an error met before h11 holds a request to answer."""
    body = json.dumps(e.body()).encode()
    head = [f"HTTP/1.1 {e.status} {HTTPStatus(e.status).phrase}", "content-type: application/json",
            *(f"{name.lower()}: {value}" for name, value in e.headers.items()), "connection: close",
            f"content-length: {len(body)}"]
    return "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body


def _too_many(max_connections: int) -> ApiError:
    """The error of a connection past the bound: 503, Retry-After, the error shape of errors.py."""
    return ApiError(503, "too_many_connections", f"the server holds at most {max_connections} connections at "
                    "once (--max-connections); retry in a moment", {"Retry-After": "1"})


# Every piece of a body (a chunk, or what one read brought) costs h11 and uvicorn the same few microseconds whatever
# its size: 1 MB sent as 1-byte chunks took 21 s of the event loop's time. Past the first pieces, they must average
# this many bytes, which any client sending its file in blocks does many times over.
MIN_PIECE_BYTES, FREE_PIECES = 256, 1024


class _Refused(h11.RemoteProtocolError):
    """A request h11 takes that this server refuses: its own error kind, and a message that stands alone."""

    def __init__(self, message: str, kind: str, status: int = 400):
        super().__init__(message, status)
        self.kind = kind


class _Remembering(h11.Connection):
    """h11's server side of a connection, keeping why the client's bytes were not HTTP/1.1 (uvicorn drops the reason),
    and checking each request's headers, target and body's pieces beyond what h11 checks."""

    error: h11.RemoteProtocolError | None = None
    pieces, piece_bytes = 0, 0  # of the current request's body

    def next_event(self) -> Any:
        try:
            event = super().next_event()
            if isinstance(event, h11.Request):
                self.pieces = self.piece_bytes = 0
                _refuse_ambiguous(event.headers)
                return _origin_form(event)
            if isinstance(event, h11.Data):
                self._count(len(event.data))
            return event
        except h11.RemoteProtocolError as e:
            self.error = e
            raise

    def _count(self, size: int) -> None:
        """Count a piece of the body; _Refused once there are too many for their bytes (`MIN_PIECE_BYTES`)."""
        self.pieces, self.piece_bytes = self.pieces + 1, self.piece_bytes + size
        if self.pieces > FREE_PIECES and self.pieces * MIN_PIECE_BYTES > self.piece_bytes:
            raise _Refused(f"the body came in {self.pieces} pieces of {self.piece_bytes / self.pieces:.0f} bytes on "
                           f"average; past the first {FREE_PIECES} this server takes pieces (chunks) of "
                           f"{MIN_PIECE_BYTES} bytes on average at least: send the file in larger blocks",
                           "body_in_tiny_pieces")


_ABSOLUTE = re.compile(rb"https?://[^/?#]*", re.I)
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]*)?")  # host[:port], empty allowed


def _refuse_ambiguous(headers: Any) -> None:
    """_Refused 400 for a request whose Host is no host[:port], that names its key or its body's type twice, or whose
    body's length is declared both by Content-Length and by Transfer-Encoding: each what h11 lets through."""
    host = next((value for name, value in headers if name == b"host"), b"")
    if not _HOST.fullmatch(host):  # HTTP asks a server to refuse it (h11 checks that there is one Host, not its value)
        raise _Refused(f"the Host header '{cut(host.decode('latin-1'))}' is not a host name or address with an "
                       "optional :port", "bad_request")
    names = [name for name, _ in headers]
    for twice in (b"authorization", b"content-type"):
        if names.count(twice) > 1:  # the server read the first; a proxy in front may have checked another
            raise _Refused(f"the request holds {names.count(twice)} {twice.decode().title()} headers; which one is meant "
                           "is ambiguous: send one", "bad_request")
    if b"content-length" in names and b"transfer-encoding" in names:
        # h11 took the chunks and dropped the length; a proxy in front that read the length instead would take the
        # rest as another request (request smuggling): refused, and the connection closed, as HTTP asks
        raise _Refused("the request is refused: both Content-Length and Transfer-Encoding declare its body's length, "
                       "which a proxy in front may read otherwise than this server; send one", "bad_request")


def _origin_form(request: h11.Request) -> h11.Request:
    """`request` with an absolute-form target (`GET http://host/readyz`) made its path and query."""
    absolute = _ABSOLUTE.match(request.target)
    if absolute is None:
        if not request.target.startswith(b"/") and request.target != b"*":
            # uvicorn took `GET readyz` as the path "readyz", and the 404 named "/readyz", a route that exists
            raise _Refused(f"the request target '{cut(request.target.decode('latin-1'))}' is no path: it starts with "
                           "'/' (GET /readyz), or is a whole http:// address; this server is no proxy (CONNECT)",
                           "bad_request")
        return request
    # what a client speaking to a proxy sends; HTTP asks every server to accept it (uvicorn read it as a path, a 404)
    rest = request.target[absolute.end():]
    return h11.Request(method=request.method, target=rest if rest.startswith(b"/") else b"/" + rest,
                       headers=request.headers, http_version=request.http_version)


def _not_http(error: h11.RemoteProtocolError | None, header_limit: int) -> ApiError:
    """The answer (the error shape of errors.py) to bytes that are not an HTTP/1.1 request whose headers may take
    `header_limit` bytes, or that ask for what h11 does not implement (501)."""
    status = error.error_status_hint if error is not None else 400
    why = (f"its request line and headers exceed {header_limit} bytes" if status == 431
           else cut(_unechoed(str(error)), 300) if error is not None else "unreadable")
    if isinstance(error, _Refused):
        answer = ApiError(status, error.kind, why)
    elif status == 501:  # a Transfer-Encoding other than chunked: valid HTTP, which this server does not take
        answer = ApiError(status, "not_implemented", f"the request asks for what this server does not implement: {why}")
    else:
        answer = ApiError(status, "bad_request", f"the request is not valid HTTP/1.1: {why}")
    return answer


_ILLEGAL_LINE = re.compile(r"^illegal (header|request) line: bytearray\((b'.*'|b\".*\")\)$", re.S)
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_BYTE = re.compile(rb"[\t\x20-\x7e\x80-\xff]")


def _unechoed(message: str) -> str:
    """h11's `message` with the header line or request query it quotes left out: a line that is not HTTP is often an
    `Authorization: Bearer KEY` with a stray CR or NUL (a key file saved on Windows), and an answer (which proxies and
    their logs keep) must never hold a key. A header is named, with the first byte HTTP does not take in it."""
    m = _ILLEGAL_LINE.match(message)
    if m is None:
        return message
    try:
        line = bytes(ast.literal_eval(m.group(2)))
    except (ValueError, SyntaxError):
        return f"an illegal {m.group(1)} line (not shown: it may hold a key)"
    if m.group(1) == "request":  # the query may hold a key put in the address by mistake
        return f"illegal request line: {re.sub(r'[?#][^ ]*', '?...', line.decode('latin-1'))!r} (not 'METHOD /path HTTP/1.1')"
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        return ("a header line is no 'Name: value' (the line is not shown back: it may hold a key); a header's name is "
                "letters, digits and !#$%&'*+.^_`|~- only")
    value = value.lstrip(b" \t")  # counted from the value's start, as the client wrote it
    bad = next((i for i in range(len(value)) if not _FIELD_BYTE.fullmatch(value[i:i + 1])), None)
    where = f"byte 0x{value[bad]:02X} at byte {bad + 1} of its value" if bad is not None else "a character"
    return (f"the header {name.decode()!r} holds {where}, which HTTP does not allow in a header (a line end or a control "
            "character: a key file saved with Windows line ends?); its value is not shown back")


def host_problem(host: str) -> str | None:
    """Why `host` is no address to listen on as given (None when it is one): empty, which binds every interface
    (`--host "$HOST"` with HOST unset), or an address written as in a URL, with a scheme, brackets or a port."""
    if not host.strip():
        return ("is empty, which would listen on every interface; give an address: 127.0.0.1 (the default) for this "
                "machine only, 0.0.0.0 for every interface")
    if host != host.strip():
        return f"'{cut(host)}' has white space around it; give {host.strip()}"
    if "://" in host or "/" in host:
        return f"'{cut(host)}' is a URL; give the address alone (e.g. 127.0.0.1), and the port as --port"
    if host.startswith("[") and host.endswith("]"):  # an IPv6 address as a URL writes it
        return f"'{cut(host)}' is bracketed, as a URL writes an IPv6 address; give it bare: {host[1:-1]}"
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and (host.count(":") == 1 or name.startswith("[")):
        return f"'{cut(host)}' holds a port; give the address alone, {name.strip('[]')}, and --port {port}"
    return None


def is_loopback(host: str) -> bool:
    """True when `host` answers this machine only: `localhost`, or any loopback address (127.0.0.0/8, ::1)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


BACKLOG = 2048  # connections the kernel queues before the server accepts them


def bind(host: str, port: int, listen: bool = True) -> socket.socket:
    """A socket bound to `host`:`port` (port 0: a free one, read it back with `getsockname()`), listening unless
    `listen` is False; OSError naming the address (and another server, when one listens there) when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # as socket.create_server sets them: a restart binds while the last run's connections are in TIME_WAIT, and
        # an IPv6 address is that address alone; a port another socket listens on is still refused
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(BACKLOG)
    except OSError as e:
        sock.close()
        raise _address_error(e, host, port) from None
    return sock


def start_listening(sock: socket.socket) -> None:
    """Listen on a socket `bind(..., listen=False)` bound: `bbuvl serve` binds before it loads the checkpoint, so a
    port another server listens on is refused in a second, not after minutes of loading, and a client is refused
    (not left waiting) until the model can answer. OSError as `bind`'s when another server began listening there
    in between."""
    try:
        sock.listen(BACKLOG)
    except OSError as e:
        host, port = sock.getsockname()[:2]
        sock.close()
        raise _address_error(e, host, port) from None


def _address_error(e: OSError, host: str, port: int) -> OSError:
    """`e` raised binding or listening on `host`:`port`, said as the address and what to do."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if e.errno == errno.EADDRINUSE:  # two servers never share a port: the second would never see a request
        return OSError(e.errno, f"{where}: another server (another `bbuvl serve`?) is listening there; stop it or "
                                "choose another --port")
    return OSError(e.errno, f"{where}: cannot listen there ({e.strerror or e})")


def protocol(pace: Pace, max_connections: int, metrics: ServeMetrics) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol, closing a connection whose next request's headers take over `pace.idle_s`, or
    whose client, answered before its body was read, sends the rest slower than `pace` allows, or whose client reads
    none of its answer for `pace.idle_s`; and answering one past `max_connections` open at once with a 503 before
    closing it. What it answers itself, below the app, is counted in `metrics` and logged as the app's answers are:
    a flood of connections, a slowloris or a broken client were in neither."""
    read_timeout_s = pace.idle_s

    class Deadlines(H11Protocol):
        answered = 0  # responses completed on this connection
        refused = False  # past max_connections: answered 503, its request read and dropped
        heard = 0.0  # loop time the client last sent bytes
        got = 0  # bytes the client sent on this connection
        answered_at, got_then = 0.0, 0  # loop time of the last answer, and `got` at that time
        began: float | None = None  # perf_counter when the current request's first byte came (None: none came yet)
        unread: Any = None  # the timer closing the connection of a client that stopped reading its answer
        half_closed = False  # the client closed its sending side (its FIN came)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn = _Remembering(h11.SERVER, self.conn._max_incomplete_event_size)

        def send_400_response(self, msg: str) -> None:
            # uvicorn's own answer is text naming nothing ("Invalid HTTP request received."); this one is the JSON
            # every other error is, saying what h11 found wrong (a missing Host, a bad chunk, conflicting lengths)
            if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):  # answered already (a 401, then a broken body)
                self.transport.close()
                return
            answer = _not_http(self.conn.error, self.conn._max_incomplete_event_size)
            status, body = answer.status, json.dumps(answer.body()).encode()
            if self.cycle is not None and not self.cycle.response_complete:
                # A body refused as it arrived: the route reading it is told why (bodies.py), and Guard counts it as
                # this answer, where it counted the disconnect the route saw, a 499 the client never caused
                self.cycle.scope.setdefault("extensions", {})[REFUSED_MID_BODY] = answer
            else:
                self._account(answer)
            headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                       (b"content-length", str(len(body)).encode())]
            reason = HTTPStatus(status).phrase.encode()  # h11 hints 400, 431 or 501 only
            for event in (h11.Response(status_code=status, headers=headers, reason=reason), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                # Each connection holds a file descriptor (1,024 a process by default): past the bound a client
                # hears why at once, where running out of descriptors would fail every accept, for everyone.
                self.connections.discard(self)  # it no longer counts against those that come after it
                self._answer_and_close(_too_many(max_connections))
                return
            self._arm()

        def _account(self, answer: ApiError) -> None:
            """Count and log an answer this protocol gave itself, no request read (or none whole)."""
            metrics.errors.labels(answer.kind).inc()
            peer = self.transport.get_extra_info("peername") if self.transport is not None else None
            # Timed from the request's first byte: a header timeout was logged as taking 0.0 ms
            account(metrics, {"path": "-", "method": "-", "client": peer or ("-",)}, answer.status,
                    time.perf_counter() if self.began is None else self.began)

        def _answer_and_close(self, answer: ApiError) -> None:
            """Write `answer` (counted) and close, dropping whatever the client sends meanwhile: the write side first,
            the rest a second later (closing with the client's bytes unread would reset the connection before it read
            it)."""
            self.refused = True
            self._account(answer)
            self.transport.write(_raw(answer))
            if self.transport.can_write_eof():
                try:
                    self.transport.write_eof()
                except OSError:
                    # the client closed the connection already (a flood of connections, each closed as it opens): an
                    # ERROR and a traceback in the log for each before, hundreds a second under such a flood
                    self.transport.abort()
                    return
            self.loop.call_later(1.0, self.transport.close)

        def data_received(self, data: bytes) -> None:
            if not self.refused:
                self.heard, self.got = self.loop.time(), self.got + len(data)
                if self.began is None and self.conn.their_state is h11.IDLE:  # not the rest of a body answered early
                    self.began = time.perf_counter()
                super().data_received(data)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self.unread is not None:
                self.unread.cancel()
            # The client reads none of its answer (a slow-read attack, or a client gone without closing): the
            # handler waits for room to write for ever, holding the connection and its task, so a few hundred such
            # clients would fill --max-connections. It gets the read timeout to read on, as a body gets to arrive.
            self.unread = self.loop.call_later(read_timeout_s, self._abort_unread)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self.unread is not None:
                self.unread.cancel()
                self.unread = None

        def _abort_unread(self) -> None:
            if not self.transport.is_closing():
                self.transport.abort()  # close() would wait for the unread answer to be written first

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None:  # a request begun: where its route hears of the client's FIN (gone.py)
                extensions = self.cycle.scope.setdefault("extensions", {})
                extensions.setdefault(SENDING_CLOSED, asyncio.Event())
                extensions.setdefault(REQUEST_BEGAN, self.began)  # where Guard times it from

        def eof_received(self) -> bool | None:
            # A client may close its sending side once its request is out (`nc -N`, a script's shutdown) and still
            # read: the connection stays open to send the answer, then closes (it closed at once, the answer unsent).
            # Its route hears of it: one waiting on the model takes it as the client leaving (gone.py), one answering
            # at once is read. A request still arriving is cut short by it: closed, and answered 499 (bodies.py).
            self.half_closed = True
            if not self._answering():
                return None
            self.cycle.scope["extensions"][SENDING_CLOSED].set()
            return True

        def _answering(self) -> bool:
            """Whether a request has all come in and its answer is still to be sent."""
            return self.cycle is not None and not self.cycle.response_complete and self.conn.their_state is h11.DONE

        def on_response_complete(self) -> None:
            self.answered += 1
            self.answered_at, self.got_then = self.loop.time(), self.got
            # The next request begins with its first byte, or now when bytes of it wait already (pipelined)
            waiting = self.conn.their_state is h11.DONE and bool(self.conn.trailing_data[0])
            self.began = time.perf_counter() if waiting else None
            super().on_response_complete()  # a request pipelined behind it starts here
            if self.half_closed and not self._answering():
                self.transport.close()  # nothing more can come from the client
                return
            self._arm()  # the next request on a kept-alive connection gets its own deadline

        def _arm(self) -> None:
            self.loop.call_later(read_timeout_s, self._expire, self.answered)

        def _expire(self, answered: int) -> None:
            if self.answered != answered or self.transport.is_closing():
                return
            if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
                # part of a request line and headers came, not all of them: the client hears why (closed without a
                # word before), as a body's client does (bodies.py)
                self._answer_and_close(ApiError(408, "header_timeout", f"the request line and headers did not all "
                                                f"arrive within {read_timeout_s:g} s; --read-timeout"))
            elif self.conn.their_state is h11.IDLE:  # nothing of a next request: an idle connection, closed quietly
                self.transport.close()
            elif self.conn.our_state is h11.DONE and self.conn.their_state is h11.SEND_BODY:
                # Answered before its body was read (a 401, 413, 415): uvicorn drops the rest as it comes and re-arms no
                # timer, so a client that stops sending it, or trickles it, would hold the connection for ever. The
                # rest gets the pace an unanswered body gets (bodies.py), counted from the answer; past it, closed.
                due, now = pace.deadline(self.answered_at, self.heard, self.got - self.got_then), self.loop.time()
                if now >= due:
                    self.transport.close()
                else:
                    self.loop.call_later(due - now, self._expire, answered)

    return Deadlines


def config(app: Any, drain_s: float = 60.0, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn settings of a served app: no access log (Guard logs), graceful drain, and the header deadline and
    bound on open connections of the app's own `ServeSettings` (`app.state.settings`, set by `create_app`)."""
    settings = app.state.settings
    # ws="none": the app has no WebSocket route, and an upgrade handed to a WebSocket protocol would reach it past
    # Guard's key check (Guard checks HTTP requests); without one an upgrade request is a plain request, key and all
    return uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=int(drain_s) + 1,
                          lifespan="on", server_header=False, ws="none",
                          http=protocol(settings.body_pace, settings.max_connections, app.state.metrics))


class _Server(uvicorn.Server):
    """uvicorn's server, whose forced stop (a second Ctrl-C while draining) answers the requests still in flight and
    then stops the app as a drained stop does."""

    cut_short = 0  # requests still in flight when a forced stop came

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if not self.force_exit:
            return
        # uvicorn leaves a forced stop's requests and the app's lifespan to the loop's end, which cancelled each with a
        # text 500 and a traceback, and the batcher's shutdown with another: cancelled here, each request is answered
        # 503 (guard.py), its photo dropped from the queue, so the app's shutdown that follows has nothing left to wait for
        tasks = [t for t in self.server_state.tasks if not t.done()]
        self.cut_short = len(tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self.lifespan.shutdown()


def serve_app(app: Any, sock: socket.socket, drain_s: float = 60.0, log_level: str = "info") -> bool:
    """Serve `app` on a bound socket until SIGTERM, SIGHUP or SIGINT, then drain open requests and return; False when a
    second SIGINT forced the stop before the drain ended (the requests still in flight were answered 503)."""
    server = _Server(config(app, drain_s, log_level))
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: caught.append(s)) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous.update(_drain_on_hangup(server, caught))
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log = logging.getLogger("bbuvl.serve")
    if server.force_exit:
        log.warning("stopped on a second SIGINT before the drain ended: %d request(s) in flight were answered 503 "
                    "(not_ready)", server.cut_short)
        return False
    if caught:
        log.info("drained and stopped on %s", signal.Signals(caught[-1]).name)
    return True


def _drain_on_hangup(server: uvicorn.Server, caught: list[int]) -> dict[int, Any]:
    """SIGHUP (a closed terminal or ssh session) stops `server` as SIGTERM does, by a drain, noted in `caught`; returns
    the handler it replaced, by signal: none where SIGHUP is ignored (nohup) or the OS has no SIGHUP."""
    # uvicorn listens for SIGTERM and SIGINT only: at its default, SIGHUP killed the server with every request in flight
    # cut off and nothing logged (docs/serving.md, "Shutdown").
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is None or signal.getsignal(hangup) == signal.SIG_IGN:
        return {}

    def stop(signum: int, frame: Any) -> None:
        caught.append(signum)
        server.should_exit = True  # what uvicorn's own handler sets for SIGTERM; a second one changes nothing

    return {hangup: signal.signal(hangup, stop)}
