"""The HTTP routes: detection, OpenAI-style chat, health, readiness, metrics and the inspector's page.

Every route but `/healthz` and the page's own static files needs `Authorization: Bearer KEY` (a browser
cannot send that header when it opens a page; the page holds no data and asks for the key itself). Bodies
are read here, counted against `--max-body-mb` as they arrive, and decoded off the event loop; the model runs
in the batcher's worker thread (batching.py). Request logs name method, path, status and time, never a
header or a byte of the body. docs/serving.md describes the API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from bbuvl.eval.fonts import find_cjk_font
from bbuvl.serve.auth import KeyStore
from bbuvl.serve.batching import Batcher
from bbuvl.serve.engine import Answer, Engine
from bbuvl.serve.errors import ApiError
from bbuvl.serve.images import decode_base64, decode_image, pixel_limit
from bbuvl.serve.metrics import ServeMetrics
from bbuvl.serve.openai import chat_response, image_from_chat

STATIC = Path(__file__).parent / "static"
OPEN_PATHS = ("/healthz", "/", "/font/cjk")
ROUTES = ("/healthz", "/readyz", "/metrics", "/v1/detect", "/v1/chat/completions", "/", "/font/cjk")
logger = logging.getLogger("bbuvl.serve")


@dataclass
class ServeSettings:
    """How a server batches, limits and answers (the `bbuvl serve` options)."""

    max_batch: int = 8
    max_wait_ms: float = 10.0
    queue_size: int = 64
    timeout_s: float = 60.0
    max_body_mb: float = 20.0
    cors_origins: list[str] = field(default_factory=list)

    @property
    def max_body_bytes(self) -> int:
        """`max_body_mb` in bytes."""
        return int(self.max_body_mb * 1024 * 1024)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 when it exceeds `limit` bytes (declared or counted as it arrives)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await _drain(request, int(declared), limit)
        raise ApiError(413, "body_too_large", f"the body is {int(declared)} bytes; this server accepts at most {limit} "
                       "(--max-body-mb)")
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            await _drain(request, seen, limit)
            raise ApiError(413, "body_too_large", f"the body exceeds {limit} bytes (--max-body-mb)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request, size: int, limit: int) -> None:
    """Read and discard the rest of a refused body when it is not much larger than the limit.

    Closing a connection with unread request bytes makes the kernel send a reset, and a reset may destroy
    the 413 before the client reads it (RFC 9112, section 9.6): a body a little too large is read to its end
    so its sender sees the answer; a huge one is cut off.
    """
    if size > 2 * limit + (1 << 20):
        return
    seen = size
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > 2 * limit + (1 << 20):
                return
    except ClientDisconnect:
        return


async def _multipart_image(request: Request, body: bytes) -> bytes:
    """The `image` file part of a multipart body (or its only file part)."""

    async def once() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, once(), max_files=1, max_fields=16, max_part_size=len(body) + 1).parse()
    except MultiPartException as e:
        raise ApiError(400, "bad_multipart", f"the multipart body cannot be parsed: {e}") from None
    try:
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        part = form.get("image")
        upload = part if isinstance(part, UploadFile) else files[0] if len(files) == 1 else None
        if upload is None:
            raise ApiError(400, "missing_image", "the multipart body has no file part named 'image'")
        return await upload.read()
    finally:
        await form.close()


async def image_bytes(request: Request, limit: int) -> bytes:
    """The uploaded image: a multipart file part, JSON `{"image": BASE64 or data: URI}`, or a raw image/* body."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("multipart/form-data", "application/json") and not ctype.startswith("image/"):
        raise ApiError(415, "unsupported_media_type", f"content type '{ctype or 'none'}' is not accepted: send "
                       "multipart/form-data with an 'image' file, application/json with an 'image' field, or image/*")
    body = await read_body(request, limit)
    if ctype == "multipart/form-data":
        return await _multipart_image(request, body)
    if ctype.startswith("image/"):
        return body
    payload = parse_json(body)
    if not isinstance(payload, dict) or "image" not in payload:
        raise ApiError(400, "missing_image", "the JSON body has no 'image' field (base64 or a data: URI)")
    return decode_base64(payload["image"], "image")


def parse_json(body: bytes) -> Any:
    """The JSON value of a body; ApiError 400 when it is not JSON."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {e}") from None


def _route_name(path: str) -> str:
    """A bounded label for metrics: a known route, `/static`, or `other`."""
    return path if path in ROUTES else "/static" if path.startswith("/static/") else "other"


class Guard:
    """ASGI middleware: the API key on every route but the open ones, then metrics and a log line per request.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, which costs an extra task and stream per request.
    """

    def __init__(self, app: Any, keys: KeyStore, metrics: ServeMetrics):
        self.app, self.keys, self.metrics = app, keys, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, path, status = time.perf_counter(), scope["path"], [500]

        async def watched(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if path in OPEN_PATHS or path.startswith("/static/") or self.keys.accepts(_header(scope, b"authorization")):
                await self.app(scope, receive, watched)
            else:
                error = ApiError(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                 {"WWW-Authenticate": "Bearer"})
                await _error(error, self.metrics)(scope, receive, watched)
        finally:
            seconds = time.perf_counter() - start
            route = _route_name(path)
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(seconds)
            client = scope.get("client") or ("-",)
            logger.info("%s %s %s %d %.1f ms", client[0], scope["method"], path, status[0], seconds * 1000)


def _header(scope: dict, name: bytes) -> str | None:
    """The first value of header `name` (lower case) in an ASGI scope."""
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)


def create_app(engine: Engine, keys: KeyStore, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app serving `engine`; its batcher starts and stops with the app's lifespan."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    batcher = Batcher(engine.run, settings.max_batch, settings.max_wait_ms, settings.queue_size,
                      on_batch=lambda n, s: (metrics.batch_size.observe(n), metrics.batch_seconds.observe(s)),
                      on_depth=metrics.queue_depth.set)
    limit = pixel_limit(engine.max_pixels)
    # Decoding gets a few threads of its own, not the shared pool of 40: more would not decode faster on a few
    # cores, and every extra thread that allocates keeps a malloc arena of its own (resident memory that grows).
    decoders = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="bbuvl-decode")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        logger.info("serving %s (mode %s), batches of up to %d", engine.checkpoint, engine.mode, settings.max_batch)
        yield
        batcher.stop(max(settings.timeout_s, 30.0))  # uvicorn has drained every connection by now
        decoders.shutdown(wait=False)
        logger.info("stopped")

    app = FastAPI(title="bbu-vl", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.batcher, app.state.metrics, app.state.engine = batcher, metrics, engine

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error(e, metrics)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _error(ApiError(e.status_code, kind, str(e.detail), dict(e.headers or {})), metrics)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        state = {"ready": batcher.alive and not batcher.full, "model_loaded": True, "worker_alive": batcher.alive,
                 "queue_depth": batcher.depth, "queue_size": settings.queue_size}
        return JSONResponse(state, status_code=200 if state["ready"] else 503, headers={} if state["ready"] else {"Retry-After": "1"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.queue_depth.set(batcher.depth)
        return Response(metrics.render(), media_type=metrics.content_type)

    async def answer(data: bytes, mode: str) -> tuple[Answer, dict[str, Any]]:
        t0 = time.perf_counter()
        image = await asyncio.get_running_loop().run_in_executor(decoders, decode_image, data, limit)
        t1 = time.perf_counter()
        try:
            result, job = await batcher.run(image, mode, settings.timeout_s)
        except (RuntimeError, ValueError) as e:  # the model failed on this photo, alone: the server goes on
            raise ApiError(500, "inference_failed", f"{type(e).__name__}: {e}") from None
        timing = {"decode": round((t1 - t0) * 1000, 2), "queue": round((job.started - job.enqueued) * 1000, 2),
                  **result.timing_ms, "total": round((time.perf_counter() - t0) * 1000, 2), "batch_size": job.batch_size}
        return result, timing

    @app.post("/v1/detect")
    async def detect(request: Request) -> JSONResponse:
        data = await image_bytes(request, settings.max_body_bytes)
        result, timing = await answer(data, engine.mode)
        return JSONResponse({"width": result.width, "height": result.height, "objects": result.objects,
                             "model": engine.info(), "timing_ms": timing})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type", f"content type '{ctype or 'none'}' is not accepted: send application/json")
        body = parse_json(await read_body(request, settings.max_body_bytes))
        result, timing = await answer(image_from_chat(body), "generate")
        extra = {"width": result.width, "height": result.height, "model_info": engine.info("generate"), "timing_ms": timing}
        return JSONResponse(chat_response(result.objects, result.raw, engine.checkpoint, extra))

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/font/cjk")
    async def cjk_font() -> FileResponse:
        # The page's last-resort font for Chinese labels: this machine's own (the one reports use, eval/fonts.py),
        # for browsers that have none.
        font = await asyncio.get_running_loop().run_in_executor(None, lambda: find_cjk_font().path)
        if font is None:
            raise ApiError(404, "not_found", "no CJK font on the server (`make fonts` installs one)")
        return FileResponse(font, media_type="font/collection" if font.suffix.lower() == ".ttc" else "font/ttf",
                            headers={"Cache-Control": "max-age=86400"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, keys=keys, metrics=metrics)  # CORS, added after, wraps it: preflights carry no key
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    return app


def _error(e: ApiError, metrics: ServeMetrics) -> JSONResponse:
    metrics.errors.labels(e.kind).inc()
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)
