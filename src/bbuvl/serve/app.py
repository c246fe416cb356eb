"""The HTTP routes: detection, OpenAI-style chat, health, readiness, metrics and the inspector's page.

Every route but `/healthz` needs the API key, as `Authorization: Bearer KEY` or, for a browser opening the
page, as Basic credentials the browser asks for itself (guard.py). Bodies are read within `--max-body-mb` (a photo)
or `--max-json-mb` (JSON), all of them together within `--max-bodies-mb` (bodies.py), and decoded off the event
loop; the model runs in the batcher's worker thread (batching.py). docs/serving.md describes the API.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from bbuvl.eval.fonts import find_cjk_font
from bbuvl.serve.answering import Answering
from bbuvl.serve.auth import KeyStore
from bbuvl.serve.batching import Batcher
from bbuvl.serve.bodies import BodyBudget, BodyLimit, Pace, image_upload, parse_json, read_body
from bbuvl.serve.cors import Cors
from bbuvl.serve.engine import Answer, Engine, GivenUp, Photo
from bbuvl.serve.errors import ApiError, cut
from bbuvl.serve.files import RangedFile, Static
from bbuvl.serve.gone import unless_gone
from bbuvl.serve.guard import ROUTES, Guard, error_response
from bbuvl.serve.images import pixel_limit
from bbuvl.serve.metrics import ServeMetrics
from bbuvl.serve.openai import chat_response, image_from_chat
from bbuvl.serve.pixels import PixelBudget

STATIC = Path(__file__).parent / "static"
PAGE_FILES = frozenset(p.name for p in STATIC.iterdir() if p.is_file())  # the page's files, in one flat folder
# HEAD beside GET: monitors and load balancers probe with it, and HTTP asks every server to answer it
READ = ["GET", "HEAD"]
logger = logging.getLogger("bbuvl.serve")


def bodies_bound_problem(max_bodies_mb: float, max_body_mb: float, max_json_mb: float) -> str | None:
    """Why a bound of `max_bodies_mb` on the bodies held at once cannot hold the largest single body, or None."""
    if max_bodies_mb >= max(max_body_mb, max_json_mb):
        return None
    return (f"{max_bodies_mb:g} MiB is less than one body may be (--max-body-mb {max_body_mb:g}, --max-json-mb "
            f"{max_json_mb:g}): the largest would be refused 503 for ever")


@dataclass
class ServeSettings:
    """How a server batches, limits and answers (the `bbuvl serve` options)."""

    max_batch: int = 8
    max_wait_ms: float = 25.0
    queue_size: int = 64
    timeout_s: float = 60.0
    # A phone's 200 MP JPEG is tens of MB (77 measured): a photo's body may be that large, and costs about its size to
    # hold (multipart or raw); a JSON body costs 5-6 times its size to read, so it keeps the old 20 (docs/serving.md,
    # "Large photos")
    max_body_mb: float = 100.0
    max_json_mb: float = 20.0
    max_bodies_mb: float = 1280.0  # every request's body together, held at once (then 503): 64 x the old 20 MiB
    cors_origins: list[str] = field(default_factory=list)
    read_timeout_s: float = 60.0  # for a request's headers in all, then per piece of its body (server.py, bodies.py)
    max_connections: int = 512  # open at once; one more is answered 503 and closed (server.py)
    min_body_rate_kib: float = 1.0  # a body's least average rate, in KiB/s, past its first read_timeout_s (0: none)
    max_waiting_mp: float = 400.0  # megapixels of uploads' own pixels kept at once for --fewshot or tiles (pixels.py)

    def __post_init__(self) -> None:
        if (problem := bodies_bound_problem(self.max_bodies_mb, self.max_body_mb, self.max_json_mb)) is not None:
            raise ValueError(f"--max-bodies-mb {problem}")

    @property
    def photo_limit(self) -> BodyLimit:
        """The largest photo body, multipart or image/* (bodies.py)."""
        return BodyLimit(int(self.max_body_mb * 2**20), "a photo (multipart or image/*)", "--max-body-mb")

    @property
    def json_limit(self) -> BodyLimit:
        """The largest JSON body, a base64 photo or a chat request (bodies.py)."""
        return BodyLimit(int(self.max_json_mb * 2**20), "a JSON body (a base64 photo, a chat request)", "--max-json-mb",
                         f"; or send the photo to /v1/detect as multipart or image/*, up to {self.max_body_mb:g} MiB")

    @property
    def max_waiting_pixels(self) -> int:
        """`max_waiting_mp` in pixels."""
        return int(self.max_waiting_mp * 1_000_000)

    @property
    def body_pace(self) -> Pace:
        """How slowly a request's body may arrive (bodies.py)."""
        return Pace(self.read_timeout_s, self.min_body_rate_kib * 1024)


def create_app(engine: Engine, keys: KeyStore, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app serving `engine`; its batcher starts and stops with the app's lifespan."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics()
    if engine.fewshot is not None:  # its support set's version, classes and staleness (serve/support_watch.py)
        metrics.registry.register(engine.fewshot.watcher)
    def run_batch(mode: str, photos: Sequence[Photo]) -> list[Answer | Exception]:
        """`engine.run`, counting the photos whose rows left their batch and the passes of it they were left out of."""
        answers = engine.run(mode, photos)
        left = [a for a in answers if isinstance(a, GivenUp) and a.left]
        metrics.rows_dropped.inc(len(left))
        metrics.row_passes_saved.inc(sum(a.passes_saved for a in left))
        return answers

    batcher = Batcher(run_batch, settings.max_batch, settings.max_wait_ms, settings.queue_size,
                      on_batch=lambda n, s: (metrics.batch_size.observe(n), metrics.batch_seconds.observe(s)),
                      on_depth=metrics.queue_depth.set)
    bodies = BodyBudget(int(settings.max_bodies_mb * 2**20))
    # Without few-shot or tiles a photo waits at its model frame's size, and at most one per decoding thread holds
    # its upload's pixels: only a photo that keeps them while it waits needs the bound (pixels.py)
    pixels = PixelBudget(settings.max_waiting_pixels) if engine.keeps_full_pixels else None
    # Decoding gets a few threads of its own, not the shared pool of 40: more would not decode faster on a few
    # cores, and every extra thread that allocates keeps a malloc arena of its own (resident memory that grows).
    decoders = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="bbuvl-decode")
    answer = Answering(engine, batcher, decoders, pixel_limit(engine.max_pixels), settings.timeout_s, pixels, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        logger.info("serving %s (mode %s), batches of up to %d", engine.checkpoint, engine.mode, settings.max_batch)
        yield
        batcher.stop(max(settings.timeout_s, 30.0))  # uvicorn has drained every connection by now
        decoders.shutdown(wait=False)
        logger.info("stopped")

    # No redirect of "/v1/detect/" to "/v1/detect": its Location is built from the client's Host header (a redirect to
    # any host the client names, and plain http behind a TLS proxy), and a redirected POST uploads its photo twice.
    app = FastAPI(title="bbu-vl", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan,
                  redirect_slashes=False)
    app.state.batcher, app.state.metrics, app.state.engine, app.state.settings = batcher, metrics, engine, settings
    app.state.pixels = pixels

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, e: ApiError) -> JSONResponse:
        return error_response(e, metrics)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, e: HTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        headers = dict(e.headers or {})
        if "Allow" in headers:  # a set's order, which changes from run to run
            headers["Allow"] = ", ".join(sorted(m.strip() for m in headers["Allow"].split(",")))
        asked = f"{request.method} {cut(request.url.path, 200)}"
        bare = request.url.path.rstrip("/")
        hint = ""
        if bare != request.url.path and bare in ROUTES:
            hint = f" (the route is {bare}, without the last '/')"
        elif bare != request.url.path and bare.removeprefix("/static/") in PAGE_FILES:
            hint = f" (the file is {bare}, without the last '/')"
        message = {404: f"{asked}: no such route or file{hint}; docs/serving.md lists the routes",
                   405: f"{asked}: this route takes {headers.get('Allow', 'other methods')} only"}
        return error_response(ApiError(e.status_code, kind, message.get(e.status_code, str(e.detail)), headers), metrics)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, e: Exception) -> JSONResponse:
        # A bug, not bad input: uvicorn logs it with its traceback after this answer; the client still gets the one
        # error shape (docs/serving.md, "Errors") instead of a bare text "Internal Server Error".
        return error_response(ApiError(500, "internal_error", f"the server failed on this request ({type(e).__name__}); "
                                       "its log holds the traceback"), metrics)

    @app.api_route("/healthz", methods=READ)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @app.api_route("/readyz", methods=READ)
    async def readyz() -> JSONResponse:
        state = {"ready": batcher.alive and not batcher.full, "model_loaded": True, "worker_alive": batcher.alive,
                 "queue_depth": batcher.depth, "queue_size": settings.queue_size}
        if engine.fewshot is not None:  # a stale support set leaves the server ready: the last good one answers
            state["fewshot"] = engine.fewshot.watcher.status()
        return JSONResponse(state, status_code=200 if state["ready"] else 503, headers={} if state["ready"] else {"Retry-After": "1"})

    @app.api_route("/metrics", methods=READ)
    async def prometheus() -> Response:
        metrics.queue_depth.set(batcher.depth)
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post("/v1/detect")
    async def detect(request: Request) -> JSONResponse:
        with bodies.hold() as take:  # the body's bytes count until the photo is answered
            extract = await image_upload(request, settings.photo_limit, settings.json_limit, settings.body_pace, take)
            result, timing = await unless_gone(request, answer(extract, engine.mode))
        # "orientation": the turn the boxes' frame took, for a viewer that shows the file as stored (docs/serving.md)
        return JSONResponse({"width": result.width, "height": result.height, "orientation": result.orientation,
                             "objects": result.objects,
                             **result.judged(), "model": engine.info(fewshot=result.fewshot), "timing_ms": timing,
                             "usage": result.usage()})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type", f"content type '{cut(ctype) or 'none'}' is not accepted: send application/json")
        with bodies.hold() as take:
            body = await read_body(request, settings.json_limit, settings.body_pace, take)
            # parsed and decoded off the event loop, under the request's deadline, as a detect body is (answering.py)
            result, timing = await unless_gone(request, answer(lambda: image_from_chat(parse_json(body)), "generate"))
        extra = {"width": result.width, "height": result.height, "orientation": result.orientation, **result.judged(),
                 "model_info": engine.info("generate", result.fewshot), "timing_ms": timing}
        return JSONResponse(chat_response(result.objects, result.raw, engine.checkpoint, extra, result.usage(), result.cut))

    @app.api_route("/", methods=READ)
    async def page() -> RangedFile:
        return RangedFile(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @app.api_route("/font/cjk", methods=READ)
    async def cjk_font() -> RangedFile:
        # The page's last-resort font for Chinese labels: this machine's own (the one reports use, eval/fonts.py),
        # for browsers that have none.
        font = await asyncio.get_running_loop().run_in_executor(None, lambda: find_cjk_font().path)
        if font is None:
            raise ApiError(404, "not_found", "no CJK font on the server (`make fonts` installs one)")
        return RangedFile(font, media_type="font/collection" if font.suffix.lower() == ".ttc" else "font/ttf",
                          headers={"Cache-Control": "max-age=86400"})

    app.mount("/static", Static(directory=STATIC), name="static")
    app.add_middleware(Guard, keys=keys, metrics=metrics)  # CORS, added after, wraps it: preflights carry no key
    if settings.cors_origins:
        app.add_middleware(Cors, origins=settings.cors_origins, metrics=metrics)
    return app


