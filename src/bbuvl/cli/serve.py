"""`bbuvl serve`: a checkpoint behind an authenticated HTTP API with dynamic batching and an inspector's page."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from bbuvl.cli.common import (PATH_OR_ID, check_device, console, fail, finite_range, int_range, one_of,
                              refuse_unused, require_file, user_errors)
from bbuvl.cli.predictor import (CHECKPOINT_HELP, LABELS, LANG, TILE_REFINE, TILE_STRIDE, TILE_WHOLE, TILE_ZOOM,
                                 TILES, ZOOM_INTO, check_mode_name, diverged_warning, mode_help, plain_labels,
                                 plain_model_mode, read_folder, read_through_config, tile_options, typed)
from bbuvl.clock import LocalTimeFormatter

# pyproject.toml's [serve] extra, which a plain `pip install bbuvl` leaves out: each distribution, and the modules it may
# be imported as (python-multipart's is `python_multipart` since 0.0.13, `multipart` before)
SERVE_EXTRA = {"fastapi": ("fastapi",), "uvicorn": ("uvicorn",), "python-multipart": ("python_multipart", "multipart"),
               "prometheus-client": ("prometheus_client",)}
INSTALL_SERVE = 'pip install -c constraints.txt -e ".[serve]" in the bbu-vl checkout (README.md, "Serving")'


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module left half-imported
        return False


def start_logging(level: str) -> None:
    """Log to stderr at `level` (info, warning...), each line stamped with its local time and UTC offset
    (bbuvl/clock.py): a server's log is read beside other machines' logs and clients' reports."""
    handler = logging.StreamHandler()
    handler.setFormatter(LocalTimeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def require_serve_extra() -> None:
    """Exit with one line naming what is missing and how to install it, unless the [serve] extra is installed."""
    missing = [name for name, modules in SERVE_EXTRA.items() if not any(map(_importable, modules))]
    if missing:
        # Before any bbuvl.serve import: those import the extra's packages, and a missing one was a 40-line traceback
        fail(f"bbuvl serve needs the [serve] extra, and {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
             f"not installed: {INSTALL_SERVE}", code=1)


def listen_host(value: str) -> str:
    """The --host value when it is an address to listen on (serve/server.py, `host_problem`), else a usage error."""
    require_serve_extra()  # the first of serve's options read, its default too
    from bbuvl.serve.server import host_problem

    if (problem := host_problem(value)) is not None:
        raise typer.BadParameter(problem)
    return value


def origins(values: list[str] | None) -> list[str] | None:
    """The --cors-origin values, each one a browser can send (serve/cors.py, `origin_problem`), else a usage error."""
    require_serve_extra()
    from bbuvl.serve.cors import origin_problem

    for value in values or []:
        if (problem := origin_problem(value)) is not None:
            raise typer.BadParameter(problem)
    return values


def serve(
    ctx: typer.Context,
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help=CHECKPOINT_HELP),
    host: str = typer.Option("127.0.0.1", callback=listen_host, help="Address to bind; the default answers this "
                             "machine only."),
    port: int = typer.Option(8000, callback=int_range(0, 65535), help="TCP port (0: any free one)."),
    mode: str = typer.Option(None, help=mode_help(serving=True)),
    labels: Optional[Path] = LABELS,
    lang: str = LANG,
    device: str = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="File with one API key per line "
                                                "(also read: $BBUVL_API_KEYS, comma-separated). Keys are never options."),
    fewshot: Optional[Path] = typer.Option(None, "--fewshot", help="Support folder: re-score every box with the few-shot "
                                           "classifier and flag weak matches `unknown`."),
    fewshot_backbone: str = typer.Option("pixels", metavar=PATH_OR_ID, help="Few-shot backbone: CLIP / DINOv2 / ResNet folder, or 'pixels[:SIDE]'."),
    fewshot_threshold: float = typer.Option(0.6, help="Few-shot best score below this -> unknown; in [-1, 1].",
                                            callback=finite_range(-1, 1)),
    fewshot_watch: float = typer.Option(2.0, "--fewshot-watch", callback=finite_range(0), help="Seconds between looks "
                                        "at the --fewshot folder for changes, served without a restart; 0: read it at "
                                        "start only."),
    max_batch: int = typer.Option(8, callback=int_range(1), help="Most images in one forward pass."),
    max_wait_ms: float = typer.Option(25.0, callback=finite_range(0), help="Longest wait for more images before a batch starts."),
    queue_size: int = typer.Option(64, callback=int_range(1), help="Images that may wait; beyond it requests get 503 + Retry-After."),
    timeout: float = typer.Option(60.0, callback=finite_range(0.1), help="Seconds a request may wait for its answer (then 504)."),
    max_body_mb: float = typer.Option(100.0, callback=finite_range(0.01), help="Largest photo upload (multipart or "
                                      "image/*), in MiB (then 413): a phone's 200 MP JPEG is tens of MB. Held once, as "
                                      "it came, it costs about its size (an 80 MB one peaked at 109 MiB, decoded at "
                                      "1/8; docs/serving.md, \"Large photos\")."),
    max_json_mb: float = typer.Option(20.0, callback=finite_range(0.01), help="Largest JSON body (a base64 photo to "
                                      "/v1/detect, a chat request), in MiB (then 413): reading one costs about 5 "
                                      "times its size."),
    max_bodies_mb: float = typer.Option(1280.0, callback=finite_range(0.01), help="Request bodies held in memory at "
                                        "once, all requests together, in MiB (then 503 + Retry-After): 12 photos of "
                                        "the default --max-body-mb, 16 of 80 MB. At least --max-body-mb and "
                                        "--max-json-mb."),
    read_timeout: float = typer.Option(60.0, callback=finite_range(0.1), help="Seconds a client may take to send a "
                                       "request's headers (then the connection is closed), and may stay silent while "
                                       "sending its body (per piece, so a slow but steady upload completes; then 408) or leave its answer unread."),
    min_body_rate: float = typer.Option(1.0, "--min-body-rate", callback=finite_range(0), help="Least average rate of "
                                        "a request's body, in KiB/s, once its first --read-timeout seconds have passed "
                                        "(then 408): a client trickling a byte now and then cannot hold a connection "
                                        "for ever. 0: no floor."),
    max_waiting_mp: float = typer.Option(400.0, "--max-waiting-mp", callback=finite_range(0.01), help="With --fewshot "
                                         "or tiles each waiting photo keeps its upload's own pixels: megapixels they "
                                         "may hold at once (then 503 + Retry-After; a photo of more is 413)."),
    max_connections: int = typer.Option(512, callback=int_range(1), help="Connections open at once; one more is "
                                        "answered 503 and closed (each holds a file descriptor)."),
    cors_origin: Optional[List[str]] = typer.Option(None, "--cors-origin", help="Allow browser calls from this origin "
                                                    "(scheme://host[:port], as the browser sends it; repeatable); CORS "
                                                    "is off without it.", callback=origins),
    log_level: str = typer.Option("info", help="debug | info | warning | error.",
                                  callback=one_of("debug", "info", "warning", "error")),
    tiles: str = TILES,
    tile_zoom: float = TILE_ZOOM,
    tile_stride: float = TILE_STRIDE,
    tile_whole: bool = TILE_WHOLE,
    zoom_into: str = ZOOM_INTO,
    tile_refine: str = TILE_REFINE,
) -> None:
    """Serve a checkpoint over HTTP: POST /v1/detect, /v1/chat/completions, /healthz, /readyz, /metrics, and a page at /.

    SIGTERM (or SIGHUP: a closed terminal) stops accepting requests, answers those already in, and exits 0; a second
    Ctrl-C answers them 503 and exits 130. docs/serving.md.
    """
    start_logging(log_level)
    require_serve_extra()
    from bbuvl.infer.predictor import Predictor
    from bbuvl.infer.tiles import check_containers
    from bbuvl.infer.verdict import run_file_missing
    from bbuvl.model.checkpoint import CheckpointError
    from bbuvl.model.identity import saved_files_note
    from bbuvl.outputs import refuse_inputs_being_written
    from bbuvl.serve.app import ServeSettings, bodies_bound_problem, create_app
    from bbuvl.serve.auth import read_keys
    from bbuvl.serve.engine import Engine
    from bbuvl.serve.names import served_name
    from bbuvl.serve.server import bind, is_loopback, serve_app, start_listening

    check_mode_name(mode, serving=True)
    # Before minutes of loading, as every other option
    if (problem := bodies_bound_problem(max_bodies_mb, max_body_mb, max_json_mb)) is not None:
        raise typer.BadParameter(problem, param_hint="--max-bodies-mb")
    with user_errors(ValueError):
        # A checkpoint a running `bbuvl train` is saving (its run/final, a checkpoint-N its rotation deletes) loaded
        # half written, or the weights of one save and the config of the next.
        refuse_inputs_being_written({"--checkpoint": checkpoint, "--labels": labels, "--fewshot": fewshot,
                                     "--api-key-file": api_key_file})
    tiled = tile_options(tiles, tile_zoom, tile_whole, zoom_into, tile_stride, tile_refine)
    labels, lang = plain_labels(checkpoint, labels, lang, typed(ctx, "lang"))
    mode = plain_model_mode(checkpoint, labels, lang, mode, lang_typed=typed(ctx, "lang"))
    refuse_unused(ctx, fewshot is not None, "--fewshot", "fewshot_backbone", "fewshot_threshold", "fewshot_watch")
    if api_key_file is not None:  # a FIFO was waited on forever, the server never starting
        require_file(api_key_file, "--api-key-file", "key file")
    if labels is not None:
        require_file(labels, "--labels", "labels JSON file")
    with user_errors(ValueError, OSError):
        keys = read_keys(api_key_file)  # before minutes of loading: a server without keys never starts
    for note in keys.warnings:
        console.print(f"[yellow]warning[/]: {escape(note)}", soft_wrap=True)
    check_device(device)
    with user_errors(OSError):  # before minutes of loading: a port another server holds is refused at once
        sock = bind(host, port, listen=False)
    rescorer = None
    if fewshot is not None:
        from bbuvl.serve.fewshot import FewShotRescorer

        with user_errors(ValueError, OSError):
            rescorer = FewShotRescorer.load(fewshot, fewshot_backbone, fewshot_threshold, device or "auto", fewshot_watch)
    with user_errors(ValueError, OSError, CheckpointError):
        folder = read_folder(checkpoint, labels, lang)
        # Before minutes of loading, and naming where it was named: "cannot read label hierarchy: no such file" named
        # neither the run config nor the key, on a checkpoint copied to a server without the run's hierarchy.
        if missing := run_file_missing(checkpoint, "data.hierarchy", folder.cfg.data.hierarchy):
            fail(f"{missing}: it says which labels are faults; copy it there, or set data.hierarchy in "
                 f"{Path(checkpoint) / 'bbuvl.yaml'} to where it is")
        # A LoRA checkpoint's base model (and the hierarchy its run config names) is read too
        refuse_inputs_being_written({k: Path(v) for k, v in read_through_config(checkpoint, folder.cfg).items()
                                     if v is not None and os.path.lexists(v)})
        check_containers(tiled.get("zoom_containers", folder.cfg.inference.zoom_containers), folder.prompt.labels)
        check_containers(tiled.get("tile_refine", folder.cfg.inference.tile_refine) or [], folder.prompt.labels,
                         "--tile-refine / inference.tile_refine")
        if (diverged := diverged_warning(checkpoint)) is not None:
            console.print(f"[yellow]warning[/]: {escape(diverged)}", soft_wrap=True)
        # As `bbuvl predict` warns on the same checkpoint: a copy that changed or lost a file since training saved it
        # was served without a word.
        if (note := saved_files_note(Path(checkpoint))) is not None:
            console.print(f"[yellow]warning[/]: {escape(note)}", soft_wrap=True)
        predictor = Predictor.load(folder, device=device)
        engine = Engine(predictor, mode, served_name(checkpoint), rescorer, overrides=tiled)
    settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size, timeout_s=timeout,
                             max_body_mb=max_body_mb, max_json_mb=max_json_mb, max_bodies_mb=max_bodies_mb,
                             cors_origins=list(cors_origin or []), read_timeout_s=read_timeout,
                             max_connections=max_connections, min_body_rate_kib=min_body_rate,
                             max_waiting_mp=max_waiting_mp)
    with user_errors(OSError):
        start_listening(sock)
    if not is_loopback(host):
        console.print(f"[yellow]warning[/]: listening on {escape(host)}, beyond this machine; the API is plain HTTP, "
                      "so put TLS in front of it (a reverse proxy)", soft_wrap=True)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"serving {escape(engine.checkpoint)} ({escape(engine.mode)} mode, {len(keys)} API key(s)) on "
                  f"{escape(f'http://{shown}:{sock.getsockname()[1]}/')}", soft_wrap=True)
    for note in predictor.threshold_notes(engine.mode, engine.options.tiles):
        console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
    if (note := engine.options.hidden_faults()) is not None:
        console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
    if rescorer is not None:
        for note in rescorer.warnings:
            console.print(f"[yellow]note[/]: --fewshot: {escape(note)}", soft_wrap=True)
        for note in rescorer.skipped:
            console.print(f"[yellow]note[/]: --fewshot left out a support photo: {escape(note)}", soft_wrap=True)
    if not serve_app(create_app(engine, keys, settings), sock, drain_s=timeout, log_level=log_level):
        raise typer.Exit(130)  # forced by a second Ctrl-C: what a shell reports for an interrupted command
