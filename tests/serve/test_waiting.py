"""Photos waiting for the model, over real HTTP: the full-size pixels they hold are bounded, the upload's decoding
counts against --timeout, and a client that leaves while its photo waits or computes is counted 499 and its photo
dropped from the queue."""

from __future__ import annotations

import gc
import io
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.serve.client import multipart
from tests.serve.conftest import API_KEY, running


def gated(engine, gate: threading.Event, **kw):
    """The test checkpoint's engine, each batch held until `gate` opens: photos pile up in the queue meanwhile."""
    from bbuvl.serve.engine import Engine

    class Gated(Engine):
        def run(self, mode, photos):
            gate.wait(20)
            return super().run(mode, photos)

    return Gated(engine.predictor, "head", engine.checkpoint, **kw)


def full_pixels_held() -> int:
    """The pixels of every uploaded photo's full-size copy alive in this process (the server runs in it), counted on
    the photos themselves."""
    from bbuvl.serve.engine import Photo

    held = {}
    for o in gc.get_objects():
        if type(o) is Photo:  # not isinstance: that asks every object (torch's deprecated ones warn)
            for im in (o.image, o.prepared.stored):
                if im is not None:
                    held[id(im)] = im.width * im.height
    return sum(held.values())


def wait_for(check, limit_s: float = 10) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_full_size_photos_kept_for_tiles_are_bounded_by_their_pixels_and_the_rest_get_503(engine, keys, photos):
    from bbuvl.serve.app import ServeSettings, create_app

    gate = threading.Event()
    tiled = gated(engine, gate, overrides={"tiles": "2x2"})
    photo = photos[0].read_bytes()
    pixels = 224 * 168
    settings = ServeSettings(max_batch=1, max_wait_ms=0, queue_size=64, max_waiting_mp=3.5 * pixels / 1e6)
    app = create_app(tiled, keys, settings)
    replies = []
    with running(app) as client:
        def send() -> None:
            body, ctype = multipart("image", "p.png", photo)
            replies.append(client.request("POST", "/v1/detect", body, {"Content-Type": ctype}))

        threads = [threading.Thread(target=send) for _ in range(8)]
        for t in threads:
            t.start()
            time.sleep(0.1)
        wait_for(lambda: len(replies) >= 5)  # 3 photos held (one at the gate, two waiting), 5 refused
        held = full_pixels_held()
        # 8 x 37,632 before: every photo waiting kept its upload's pixels, however many (18 GiB at 64 x 100 MP)
        assert 0 < held <= 3.5 * pixels, held
        refused = [r for r in replies if r.status == 503]
        assert len(refused) == 5 and all(r.headers["retry-after"] == "1" for r in refused), [r.status for r in replies]
        assert all(r.json()["error"]["kind"] == "queue_full" and "--max-waiting-mp" in r.json()["error"]["message"]
                   for r in refused), refused[0].body
        gate.set()
        for t in threads:
            t.join(30)
        assert sorted(r.status for r in replies) == [200] * 3 + [503] * 5
        assert client.detect_file(photos[1]).status == 200  # every held pixel was given back
        assert app.state.pixels.held == 0


def test_a_photo_larger_than_the_waiting_budget_is_413_not_503_for_ever(engine, keys, photos):
    from bbuvl.serve.app import ServeSettings, create_app

    from bbuvl.serve.engine import Engine

    tiled = Engine(engine.predictor, "head", engine.checkpoint, overrides={"tiles": "2x2"})
    with running(create_app(tiled, keys, ServeSettings(max_waiting_mp=0.02))) as client:
        r = client.detect_file(photos[0])  # 37,632 pixels, over 20,000: no amount of waiting makes room for it
        assert r.status == 413 and r.json()["error"]["kind"] == "image_too_large", r.body
        assert "--max-waiting-mp" in r.json()["error"]["message"]


def slow_photo() -> bytes:
    """A 2236x2236 lossy WebP of noise, turned by its EXIF (5 MP, the test checkpoint's pixel limit): the slowest to
    decode of the usual formats, most of a second."""
    exif = Image.Exif()
    exif[0x0112] = 6
    noise = np.random.default_rng(0).integers(0, 256, (2236, 2236, 3), dtype=np.uint8)
    data = io.BytesIO()
    Image.fromarray(noise).save(data, "WEBP", quality=100, exif=exif)
    return data.getvalue()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_decoding_an_upload_counts_against_the_timeout(serve):
    from bbuvl.serve.images import decode_image

    data = slow_photo()
    t = time.monotonic()
    decode_image(data, 10**8)
    decode_s = time.monotonic() - t
    client = serve(timeout_s=decode_s / 6)
    t = time.monotonic()
    r = client.request("POST", "/v1/detect", data, {"Content-Type": "image/webp"})
    took = time.monotonic() - t
    assert r.status == 504 and r.json()["error"]["kind"] == "timeout", r.body
    # answered once the photo was decoded, a whole decoding past --timeout, before
    assert took < decode_s * 0.8, (took, decode_s)
    assert client.request("GET", "/readyz").status == 200


def detect_request(photo) -> bytes:
    """A whole POST /v1/detect of `photo`, as bytes to send on a socket of one's own (to close it at will)."""
    body, ctype = multipart("image", "p.png", photo.read_bytes())
    head = (f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def metric(client, name: str) -> str:
    return "\n".join(line for line in client.request("GET", "/metrics").body.decode().splitlines()
                     if line.startswith(name))


def test_a_client_that_leaves_while_its_photo_computes_or_waits_is_499_and_a_waiting_photo_is_not_computed(engine, keys,
                                                                                                          photos):
    from bbuvl.serve.app import ServeSettings, create_app

    gate = threading.Event()
    app = create_app(gated(engine, gate), keys, ServeSettings(max_batch=1, max_wait_ms=0))
    request = detect_request(photos[0])
    with running(app) as client:
        computing = socket.create_connection(("127.0.0.1", client.port), timeout=10)
        computing.sendall(request)
        wait_for(lambda: app.state.batcher.depth == 0 and 'bbuvl_queue_depth 0.0' in metric(client, "bbuvl_queue"))
        time.sleep(0.3)  # its batch has begun: held at the gate
        waiting = socket.create_connection(("127.0.0.1", client.port), timeout=10)
        waiting.sendall(request)
        wait_for(lambda: app.state.batcher.depth == 1)
        computing.close()
        waiting.close()
        wait_for(lambda: 'status="499"} 2.0' in metric(client, "bbuvl_requests_total"))
        gate.set()
        assert client.detect_file(photos[1]).status == 200
        requests = metric(client, 'bbuvl_requests_total{route="/v1/detect"')
        # 200 twice before: a client gone was counted as answered, and its waiting photo computed for nobody
        assert 'status="499"} 2.0' in requests and 'status="200"} 1.0' in requests, requests
        assert "bbuvl_batch_size_count 2.0" in metric(client, "bbuvl_batch_size_count")  # the gone one's and the last
        assert 'bbuvl_errors_total{kind="client_disconnected"} 2.0' in metric(client, "bbuvl_errors_total")


def test_bbuvl_serve_refuses_a_waiting_bound_of_no_pixels_before_loading(trained_checkpoint):
    from typer.testing import CliRunner

    from bbuvl.cli import app as cli

    r = CliRunner().invoke(cli, ["serve", "-c", str(trained_checkpoint), "--max-waiting-mp", "0", "--device", "cpu"],
                           env={"BBUVL_API_KEYS": "k" * 32})
    said = "".join(r.output.split())
    assert r.exit_code == 2 and "--max-waiting-mp" in said and ">=0.01" in said and "Nosuchoption" not in said, r.output


def test_places_in_the_queue_held_by_clients_that_left_are_given_to_the_next(engine, keys, photos):
    from bbuvl.serve.app import ServeSettings, create_app

    gate = threading.Event()
    app = create_app(gated(engine, gate), keys, ServeSettings(max_batch=1, max_wait_ms=0, queue_size=2))
    request = detect_request(photos[0])
    with running(app) as client:
        computing = socket.create_connection(("127.0.0.1", client.port), timeout=10)
        computing.sendall(request)
        time.sleep(0.5)  # its batch has begun: held at the gate
        gone = []
        for _ in range(2):
            gone.append(socket.create_connection(("127.0.0.1", client.port), timeout=10))
            gone[-1].sendall(request)
        wait_for(lambda: app.state.batcher.depth == 2)
        for s in gone:
            s.close()
        wait_for(lambda: 'status="499"} 2.0' in metric(client, "bbuvl_requests_total"))
        assert client.request("GET", "/readyz").status == 200  # 503 before: the queue was full of photos nobody awaited
        answer = []
        late = threading.Thread(target=lambda: answer.append(client.detect_file(photos[1])))
        late.start()
        wait_for(lambda: app.state.batcher.depth == 1)  # queued, where it was 503 queue_full before
        gate.set()
        late.join(20)
        computing.close()
        assert answer and answer[0].status == 200, answer
        assert "bbuvl_batch_size_count 2.0" in metric(client, "bbuvl_batch_size_count")  # the gone ones never computed


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_pixels_held_by_photos_whose_clients_left_are_given_to_the_next(engine, keys, photos):
    from bbuvl.serve.app import ServeSettings, create_app

    gate = threading.Event()
    tiled = gated(engine, gate, overrides={"tiles": "2x2"})
    app = create_app(tiled, keys, ServeSettings(max_batch=1, max_wait_ms=0, max_waiting_mp=2.5 * 224 * 168 / 1e6))
    request = detect_request(photos[0])
    with running(app) as client:
        computing = socket.create_connection(("127.0.0.1", client.port), timeout=10)
        computing.sendall(request)
        time.sleep(0.5)  # its batch has begun: held at the gate, its pixels held
        gone = socket.create_connection(("127.0.0.1", client.port), timeout=10)
        gone.sendall(request)
        wait_for(lambda: app.state.batcher.depth == 1)
        gone.close()
        wait_for(lambda: 'status="499"} 1.0' in metric(client, "bbuvl_requests_total"))
        answer = []
        late = threading.Thread(target=lambda: answer.append(client.detect_file(photos[1])))
        late.start()
        wait_for(lambda: app.state.batcher.depth == 1 or bool(answer))  # 503 before: the gone photo's pixels were held
        gate.set()
        late.join(20)
        computing.close()
        assert answer and answer[0].status == 200, answer[0].body if answer else None
        assert app.state.pixels.held == 0
