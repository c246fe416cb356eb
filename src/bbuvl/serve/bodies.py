"""Reading a request's body within the size limit, and finding the uploaded image in it (multipart, JSON or raw)."""

from __future__ import annotations

import asyncio
import io
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterator

from fastapi import Request
from starlette.formparsers import parse_options_header
from starlette.requests import ClientDisconnect

from bbuvl.data import jsonfile
from bbuvl.serve.errors import ApiError, cut
from bbuvl.serve.images import decode_base64

try:  # python-multipart's module since 0.0.13; pyproject.toml takes 0.0.9 on, whose module is `multipart`
    from python_multipart import MultipartParser
    from python_multipart.exceptions import FormParserError
except ModuleNotFoundError:  # pragma: no cover
    from multipart import MultipartParser  # type: ignore[no-redef]
    from multipart.exceptions import FormParserError  # type: ignore[no-redef]


@dataclass(frozen=True)
class BodyLimit:
    """The largest body of one kind a request may send: `size` bytes, what bodies it is for, the `bbuvl serve` option
    that sets it, and what else a refused client may do (docs/serving.md, "Large photos")."""

    size: int
    of: str
    option: str
    otherwise: str = ""

    def refusal(self, size: int, declared: bool) -> ApiError:
        """The 413 of a body of `size` bytes (as its Content-Length declared, or as many as came before it was cut)."""
        # Said in MiB, as the option is given, and naming the option: "accepts at most 20971520 (--max-body-mb)" left
        # a technician guessing what to ask the operator for, and a phone's 200 MP photo (tens of MB) was refused so
        size_text = f"is {size / 2**20:.1f} MiB ({size} bytes)" if declared else f"exceeds {self.size / 2**20:g} MiB"
        return ApiError(413, "body_too_large", f"the body {size_text}; this server takes {self.of} of at most "
                        f"{self.size / 2**20:g} MiB ({self.size} bytes); the server's operator can raise that with `bbuvl "
                        f"serve {self.option} N` (N in MiB){self.otherwise}")


class BodyBudget:
    """The bytes of request bodies held in memory by every request together, up to `limit` (--max-bodies-mb).

    Each open connection may send --max-body-mb, and --max-connections of them at once would hold gigabytes (512 x
    100 MiB): past the budget a request is answered 503 and its bytes dropped instead. Bytes are counted as they arrive,
    not as declared, so holding the budget costs a client the bytes themselves.
    """

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0

    @contextmanager
    def hold(self) -> Iterator[Callable[[int], None]]:
        """One request's share: call it with each piece's size as it arrives (ApiError 503 past the budget); all of it
        is given back when the request is answered."""
        taken = 0

        def take(size: int) -> None:
            nonlocal taken
            if self.held + size > self.limit:
                raise ApiError(503, "queue_full", f"the server holds {self.held / 2**20:.0f} MiB of request bodies "
                               f"already, its bound ({self.limit / 2**20:g} MiB: --max-bodies-mb); "
                               "retry in a moment", {"Retry-After": "1"})
            self.held += size
            taken += size

        try:
            yield take
        finally:
            self.held -= taken


@dataclass(frozen=True)
class Pace:
    """How slowly a body may arrive: at most `idle_s` of silence between pieces, and, once its first `idle_s` have
    passed, `min_rate` bytes a second on average (0: no floor). docs/serving.md, "Slow and vanishing clients"."""

    idle_s: float
    min_rate: float = 0.0

    def deadline(self, started: float, heard: float, seen: int) -> float:
        """When the next piece is due, for a body begun at `started` whose last piece came at `heard`, `seen` bytes in."""
        # Each byte buys 1 / min_rate s on top of the first idle_s: an honest slow upload earns its time as it sends,
        # while a byte every idle_s - 1 s, which the idle deadline alone never cuts, earns almost none.
        silent = heard + self.idle_s
        return silent if self.min_rate <= 0 else min(silent, started + self.idle_s + seen / self.min_rate)

    def too_slow(self, started: float, now: float, seen: int) -> ApiError:
        """The 408 of a body whose average rate fell under the floor."""
        took = now - started
        return ApiError(408, "body_too_slow", f"the body came at {seen / max(took, 1e-9):.0f} bytes/s on average ({seen} "
                        f"bytes in {took:.1f} s), under this server's floor of {self.min_rate / 1024:g} KiB/s once the "
                        f"first {self.idle_s:g} s have passed; --min-body-rate", {"Connection": "close"})


async def read_body(request: Request, limit: BodyLimit, pace: Pace,
                    take: Callable[[int], None] = lambda size: None) -> bytes:
    """The whole body, refused with 413 when it exceeds `limit` (declared or counted as it arrives), 408 when
    it stalls or comes slower than `pace` allows, 415 when it is compressed; 499 when the client goes away. `take` is
    told each piece's size before it is kept (a `BodyBudget.hold`, which may refuse it)."""
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):  # inflating it would let a few KB pass --max-body-mb; photos are compressed already
        raise ApiError(415, "unsupported_content_encoding", f"Content-Encoding '{cut(coding)}' is not accepted: send the "
                       "body uncompressed (JPEG and PNG are compressed already)")
    # One growing buffer, not a list of pieces joined at the end: the join held the body twice (an 80 MB photo took
    # 153 MiB at the peak as a raw body, 109 now); BytesIO grows in place and hands its buffer over without a copy
    kept, seen, refused = io.BytesIO(), 0, None
    loop = asyncio.get_running_loop()
    started = heard = loop.time()
    got = 0  # bytes read, those of a refused body read away included
    try:
        # A deadline moved on by every piece that arrives, as far as `pace` allows: a 20 MB photo over a slow but
        # steady link takes minutes and completes, while a stalled client is cut after --read-timeout of silence and a
        # trickling one once its average falls under --min-body-rate (docs/serving.md, "Slow and vanishing clients").
        async with asyncio.timeout_at(pace.deadline(started, heard, 0)) as deadline:
            def arrived(size: int) -> None:
                nonlocal heard, got
                heard, got = loop.time(), got + size
                deadline.reschedule(pace.deadline(started, heard, got))

            declared = request.headers.get("content-length")
            # One stream for the body and its refused rest alike: Starlette's refuses to be read twice once its last
            # piece is in, so a body without a length whose last piece passed the limit was a 500 "Stream consumed"
            pieces = request.stream()
            if declared is not None and declared.isdigit() and int(declared) > limit.size:
                refused = limit.refusal(int(declared), declared=True)
                # A client that asked to hear first (Expect: 100-continue, as curl asks for a file over 1 MB) has sent
                # none of it yet: reading it away would answer "100 Continue", and the megabytes came only to be dropped
                if "100-continue" not in request.headers.get("expect", "").lower():
                    await _drain(pieces, int(declared), 0, limit.size, arrived)
                raise refused
            async for chunk in pieces:
                arrived(len(chunk))
                seen += len(chunk)
                if seen > limit.size:
                    refused = limit.refusal(seen, declared=False)
                    await _drain(pieces, seen, seen, limit.size, arrived)
                    raise refused
                take(len(chunk))
                kept.write(chunk)
    except TimeoutError:
        if refused is not None:  # the client stalled while its refused body was read away: it is still too large
            raise refused from None
        # The rest of the body may still come: the connection cannot carry another request, so it is closed at once.
        now = loop.time()
        if now - heard < pace.idle_s:  # pieces still came, too few of them
            raise pace.too_slow(started, now, got) from None
        raise ApiError(408, "body_timeout", f"no part of the body arrived for {pace.idle_s:g} s ({seen} bytes came "
                       "before); --read-timeout", {"Connection": "close"}) from None
    except ClientDisconnect:
        # the server's protocol may have refused the body itself (a bad chunk, pieces too small) and closed: its answer,
        # also when it came while a refused body was read away (counted as a 413 the client never got before); a
        # client that left then is still refused for its body's size
        raise request.scope.get("extensions", {}).get(REFUSED_MID_BODY) or refused or client_gone() from None
    except asyncio.CancelledError:
        # uvicorn cancels what still runs when the drain at shutdown ends; a body still arriving then (a slow upload
        # may take longer than the drain) is the client's to send again, not a server failure with a traceback
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        raise ApiError(503, "not_ready", f"the server is stopping and the body was still arriving ({seen} bytes came) "
                       "when its drain (--timeout) ended; send it again", {"Retry-After": "1", "Connection": "close"}) from None
    return kept.getvalue()


# Where the server's protocol (server.py) leaves the error it answered a request's body with, refused as it arrived
REFUSED_MID_BODY = "bbuvl.refused_mid_body"


def client_gone() -> ApiError:
    """The error of a request whose client closed its connection first: nobody reads the answer, but metrics and logs
    count it as 499 (the status proxies use for it), not as a server failure."""
    return ApiError(499, "client_disconnected", "the client closed the connection before the request was answered")


async def _drain(pieces: AsyncIterator[bytes], size: int, read: int, limit: int, arrived: Callable[[int], None]) -> None:
    """Read and discard the rest of a refused body when it is not much larger than the limit.

    Closing a connection with unread request bytes makes the kernel send a reset, and a reset may destroy
    the 413 before the client reads it (RFC 9112, section 9.6): a body a little too large is read to its end
    so its sender sees the answer; a huge one is cut off. `pieces` is the body's stream, `size` its size as declared
    (else its bytes counted so far), `read` the bytes of it read already; `arrived` is told each piece's size (it
    moves the read deadline on).
    """
    most = 2 * limit + (1 << 20)
    if size > most:
        return
    # Counted from the bytes read, not from the declared size: a body declared at 1.5-2x the limit was answered once
    # its bytes read and its size together passed `most`, before its end came
    async for chunk in pieces:
        arrived(len(chunk))
        read += len(chunk)
        if read > most:
            return


MAX_PARTS = 32  # a detect body holds one; each part costs the parser its headers' work
_LINE_ENDS = re.compile(rb"[\r\n]*")


@dataclass
class _Part:
    """One part of a multipart body: its field name, its filename (None for a text field) and its bytes."""

    name: str
    filename: str | None
    pieces: list[tuple[bytes, int, int]]  # (buffer, start, end): the body itself, or the parser's own look-behind
    extended: bool = False  # its Content-Disposition names its file as filename*=... (which the parser drops)

    def data(self, body: bytes) -> bytes | memoryview:
        """The part's bytes: a view of `body` when they lie in one run of it (a photo's megabytes, not copied: the copy
        held an 80 MB photo twice), else joined."""
        if self.pieces and all(buffer is body for buffer, _, _ in self.pieces) and \
                all(end == start for (_, _, end), (_, start, _) in zip(self.pieces, self.pieces[1:])):
            return memoryview(body)[self.pieces[0][1]:self.pieces[-1][2]]
        return b"".join(memoryview(buffer)[start:end] for buffer, start, end in self.pieces)


def _field_text(raw: bytes) -> str:
    """A name from a part's Content-Disposition: UTF-8, or Latin-1 when it is not (as Starlette's form parser reads it)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parts(boundary: bytes, body: bytes) -> list[_Part]:
    """The parts of a multipart body, up to its closing boundary; ApiError 400 when it cannot be parsed, holds over
    `MAX_PARTS` parts or ends before its closing boundary."""
    parts: list[_Part] = []
    headers: dict[bytes, bytes] = {}
    field, value = bytearray(), bytearray()

    def header_end() -> None:
        headers[bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def headers_finished() -> None:
        if len(parts) == MAX_PARTS:
            raise ApiError(400, "bad_multipart", f"the multipart body holds more than {MAX_PARTS} parts; /v1/detect "
                           "takes one, the photo")
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise ApiError(400, "bad_multipart", f"multipart part {len(parts) + 1} has no Content-Disposition with a "
                           "name (form-data; name=\"image\"; filename=\"...\")")
        filename = _field_text(options[b"filename"]) if b"filename" in options else None
        encoding = headers.get(b"content-transfer-encoding", b"").strip().lower()
        if encoding not in (b"", b"binary", b"8bit", b"7bit"):
            # its bytes are base64 (or quoted-printable) text: read as the photo they were "not an image", which hid
            # what to change (an e-mail library's MIME builder, not a form's)
            raise ApiError(400, "bad_multipart", f"multipart part {len(parts) + 1} "
                           f"({cut(repr(_field_text(options[b'name'])), 40)}) says Content-Transfer-Encoding: "
                           f"{cut(encoding.decode('latin-1'), 30)}, which multipart/form-data does not use: send the "
                           "file's own bytes, as curl -F image=@photo.jpg does")
        extended = b"filename*=" in headers.get(b"content-disposition", b"").lower()
        parts.append(_Part(_field_text(options[b"name"]), filename, [], extended))
        headers.clear()

    callbacks = {"on_header_field": lambda data, a, b: field.extend(data[a:b]),
                 "on_header_value": lambda data, a, b: value.extend(data[a:b]), "on_header_end": header_end,
                 "on_headers_finished": headers_finished,
                 # where they lie, not copies: the photo's bytes are a view of the body (`_Part.data`)
                 "on_part_data": lambda data, a, b: parts[-1].pieces.append((data, a, b)),
                 "on_end": _closed}
    try:
        MultipartParser(boundary, callbacks).write(body)
    except _Closed:
        return parts
    except FormParserError as e:
        raise ApiError(400, "bad_multipart", f"the multipart body cannot be parsed: {cut(str(e), 200)}") from None
    # The parser keeps what came before the cut: a truncated upload was "no file part named 'image'" before
    raise ApiError(400, "bad_multipart", f"the multipart body ends before its closing boundary "
                   f"'--{cut(boundary.decode('latin-1'))}--': the upload was cut off, or the body is not multipart")


class _Closed(Exception):
    """Raised from the multipart parser's `on_end`: its closing boundary is read, and the epilogue after it is not."""


def _closed() -> None:
    """Stop the parser at the closing boundary: what follows is an epilogue, which RFC 2046 says to ignore (clients add
    line ends there), so it is never parsed; the body's limit bounds it, as it bounds the rest."""
    raise _Closed


def _multipart_image(content_type: str, body: bytes) -> bytes | memoryview:
    """The `image` file part of a multipart body (or its only file part).

    Parsed here, on a decoding thread, not on the event loop: the parser steps through some bodies a byte at a time in
    Python (a part of "\\r\\n--BOUNDARY" and one byte, over and over, takes it a second a megabyte), and every other
    client waited meanwhile (docs/serving.md, "Slow and vanishing clients").
    """
    boundary = parse_options_header(content_type)[1].get(b"boundary", b"")
    if not boundary:
        raise ApiError(400, "bad_multipart", "the multipart Content-Type names no boundary "
                       "(multipart/form-data; boundary=...): a client library sets it when it builds the body")
    # The parser steps byte by byte through each whole boundary that no line end or "--" follows (a second a megabyte,
    # of a decoding thread another client's photo waits for); a body holds one a part and no part may hold one, so
    # more than MAX_PARTS is refused from a count made at C speed first
    delimiters = body.count(b"\r\n--" + boundary)
    if delimiters > MAX_PARTS:
        raise ApiError(400, "bad_multipart", f"the multipart body holds its boundary '--{cut(boundary.decode('latin-1'))}' "
                       f"{delimiters} times; a part may not hold it, and /v1/detect takes at most {MAX_PARTS} parts")
    # Looked at in place: body.strip() copied the whole body (a photo's megabytes) to see whether it was blank
    if body and not body.isspace() and not body.startswith(b"--" + boundary, _LINE_ENDS.match(body).end()):
        # the parser's own words were "Expected boundary character 111, got 88 at index 4": a body built with one
        # boundary sent under a Content-Type naming another (a header set by hand), or text before the first part
        raise ApiError(400, "bad_multipart", f"the multipart body does not begin with the boundary its Content-Type "
                       f"names, '--{cut(boundary.decode('latin-1'))}': the header names another boundary than the body "
                       "holds (a Content-Type set by hand?), or something precedes the first part")
    parts = _parts(boundary, body)
    files = [p for p in parts if p.filename is not None]
    if len(files) > 1:  # "too many files" of the parser before, as if the body were broken
        raise ApiError(400, "too_many_images", f"the multipart body holds {len(files)} files "
                       f"({', '.join(cut(repr(p.name)) for p in files[:5])}); /v1/detect takes one photo per request: "
                       "send each in its own")
    upload = files[0] if files else None
    as_text = any(p.name == "image" for p in parts)
    # read from the part's own header: a search of the whole body for it took a time that grew with the square of a
    # line's length (a line of 'name=image;' repeated, 88 KB, took 3 s of a decoding thread; a megabyte, minutes)
    if as_text and upload is None and any(p.name == "image" and p.extended for p in parts):
        # the parser drops `filename*=UTF-8''...` (the extended form, which multipart bodies must not use), so the
        # photo arrived as text: "its part has no filename" before, while the client did name one
        raise ApiError(400, "missing_image", "the multipart part 'image' names its file only as filename*=..., "
                       "which multipart/form-data does not take: name it filename=\"...\" (UTF-8 may stand in it "
                       "as it is)")
    if as_text and upload is None:  # `curl -F image=photo.jpg`: the name, not the file
        raise ApiError(400, "missing_image", "the multipart field 'image' is text, not a file (its part has no "
                       "filename): send the photo as a file, e.g. curl -F image=@photo.jpg")
    if upload is None:
        raise ApiError(400, "missing_image", "the multipart body has no file part named 'image'")
    refuse_other_fields([p.name for p in parts if p is not upload])
    return upload.data(body)


async def image_upload(request: Request, photo_limit: BodyLimit, json_limit: BodyLimit, pace: Pace,
                       take: Callable[[int], None]) -> Callable[[], bytes | memoryview]:
    """How to get the uploaded image out of the body, once read as `read_body` reads it (telling `take`) within
    `photo_limit` (a multipart file part or a raw image/* body) or `json_limit` (JSON `{"image": BASE64 or data: URI}`).
    The parse is left to the caller, which runs it off the event loop, under the request's deadline, with the photo's
    decoding (app.py)."""
    # A setting in the query (?score_threshold=0.5) would be ignored as one in the body would: refused alike
    refuse_other_fields([f"?{name}" for name in dict.fromkeys(request.query_params.keys())])
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("multipart/form-data", "application/json") and not ctype.startswith("image/"):
        raise ApiError(415, "unsupported_media_type", f"content type '{cut(ctype) or 'none'}' is not accepted: send "
                       "multipart/form-data with an 'image' file, application/json with an 'image' field, or image/*")
    # A JSON body costs about 5 times its size to read (its text, the string it parses to, the bytes its base64
    # decodes to), a photo's bytes about their size: each its own limit (docs/serving.md, "Large photos")
    body = await read_body(request, json_limit if ctype == "application/json" else photo_limit, pace, take)
    if ctype.startswith("image/"):
        return lambda: body
    # Megabytes of JSON and base64, or of multipart, take the CPU for a while: off the event loop, as a photo's
    # decoding is (app.py)
    if ctype == "multipart/form-data":
        header = request.headers["content-type"]
        return lambda: _multipart_image(header, body)
    return lambda: _json_image(body)


def _json_image(body: bytes) -> bytes:
    """The image of a JSON detect body, `{"image": BASE64 or data: URI}`."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or "image" not in payload:
        raise ApiError(400, "missing_image", f"the JSON body has no 'image' field (base64 or a data: URI); "
                       f"{_what_it_holds(payload)}: send {{\"image\": \"data:image/jpeg;base64,...\"}}")
    refuse_other_fields([key for key in payload if key != "image"])
    return decode_base64(payload["image"], "image")


def _what_it_holds(payload: Any) -> str:
    """What a JSON detect body without an 'image' holds instead, for its 400: the keys another API names the photo by
    ('image_url', 'images'), a misspelling ('Image'), a chat body sent to the wrong route."""
    if isinstance(payload, dict) and "messages" in payload:
        return "it is a chat request, which goes to /v1/chat/completions"
    if isinstance(payload, dict) and payload:
        shown = ", ".join(repr(cut(str(key), 40)) for key in list(payload)[:5])
        return f"it holds {shown}{' and more' if len(payload) > 5 else ''}"
    kinds = {dict: "an empty object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return f"it is {kinds.get(type(payload), 'a number')}"


def refuse_other_fields(names: list[str]) -> None:
    """ApiError 400 naming the fields a detect request sent beside its image: a setting sent that way (a score
    threshold, a tile grid) would be ignored while the client believes it applied."""
    if names:
        shown = ", ".join(cut(repr(n)) for n in names[:5]) + (" ..." if len(names) > 5 else "")
        raise ApiError(400, "unknown_field", f"the request sends {shown} beside the image; /v1/detect takes the image "
                       "alone, and the server's own settings (`bbuvl serve` options, the checkpoint's config) apply to "
                       "every request")


MAX_JSON_DEPTH = 32  # an OpenAI-style chat body nests 6 deep; deeper is no request this server answers
# Commas, [ and { outside strings: a chat body holds tens, a detect body one. Each is a value the parser builds in
# Python (the duplicate-key hook, the long-integer hook), and 20 MB of "0," took 5 s to parse and 10 s to walk, on the
# event loop, while every other client waited.
MAX_JSON_VALUES = 10_000
# Unrolled: one C loop per string, not one step per byte. A string left open runs to the end of the body: matched
# there rather than failed, or the search began again at every quote after it, each scanning to the end (a body of
# '"\\"' repeated, 80 KB, took 19 s of a decoding thread, and a megabyte hours, while the photos behind it waited).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.S)
_BRACKETS = bytes.maketrans(b"[]{}", b"()()")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def parse_json(body: bytes) -> Any:
    """The JSON value of a body; ApiError 400 when it is not JSON, nests deeper than `MAX_JSON_DEPTH` or holds more
    than `MAX_JSON_VALUES` values."""
    too_deep = ApiError(400, "json_too_deep", f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels of [ and {{; "
                        "no request to this server needs that many")
    bare = _JSON_STRING.sub(b'""', _as_utf8(body))  # its structure: what the parser would build, counted in C first
    if bare.count(b",") > MAX_JSON_VALUES:
        raise _too_many(bare)
    if _nests_deeper(bare.translate(_BRACKETS, _NOT_BRACKETS), MAX_JSON_DEPTH):
        raise too_deep
    if bare.count(b",") + bare.count(b"[") + bare.count(b"{") > MAX_JSON_VALUES:
        raise _too_many(bare)
    try:
        # jsonfile's parser, as for the files a user gives: a key named twice is refused rather than one of its values
        # dropped, and an integer of thousands of digits is read as a float (inf) where Python's int raised (a 500)
        return jsonfile.parse_json(body)
    except jsonfile.DuplicateKeyError as e:
        raise ApiError(400, "duplicate_key", f"the JSON body is ambiguous: {e}") from None
    except ValueError as e:  # not JSON, or not UTF-8/16/32 text
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {e}") from None
    except RecursionError:  # the parser's own limit (~1,000 levels), should the count above ever miss one
        raise too_deep from None


def _as_utf8(body: bytes) -> bytes:
    """`body` in UTF-8, whichever UTF encoding JSON allows it is in (bytes that are none stay as they are)."""
    encoding = json.detect_encoding(body)
    if encoding == "utf-8":
        return body
    try:
        return body.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
    except UnicodeError:  # the parser names it
        return body


def _too_many(bare: bytes) -> ApiError:
    """The 400 of a JSON body holding more values than any request to this server."""
    marks = bare.count(b",") + bare.count(b"[") + bare.count(b"{")
    return ApiError(400, "json_too_many_values", f"the JSON body holds {marks} values and containers (its ',', '[' and "
                    f"'{{' outside strings); no request to this server needs more than {MAX_JSON_VALUES}")


def _nests_deeper(brackets: bytes, limit: int) -> bool:
    """Whether `brackets` (only '(' and ')', one per [ { and ] }) nest deeper than `limit`, or leave more than `limit`
    open: each pass drops every innermost pair, so what `limit` passes leave is deeper than `limit`."""
    for _ in range(limit):
        inner = brackets.replace(b"()", b"")
        if len(inner) == len(brackets):
            break
        brackets = inner
    return b"()" in brackets or b"(" * (limit + 1) in brackets
