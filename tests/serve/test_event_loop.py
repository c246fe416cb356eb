"""What a request costs the server: parsed off the event loop (while one client's upload is parsed, another client's
requests are answered), and held at its model frame's size while it waits; over real HTTP on localhost."""

from __future__ import annotations

import threading
import time

import pytest

from tests.serve.client import Reply


def hostile_multipart(size: int) -> tuple[bytes, str]:
    """A multipart body of `size` bytes whose file part is the boundary again and again, each time followed by a byte
    that makes it no delimiter: python-multipart steps through each in Python, about a second a megabyte."""
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    return head + b"\r\n--bX" * (size // 6) + b"\r\n--b--\r\n", "multipart/form-data; boundary=b"


def test_a_multipart_body_of_near_boundaries_holds_up_no_other_client_and_is_refused_at_once(serve):
    client = serve(max_body_mb=3.0)
    body, ctype = hostile_multipart(2 * 1024 * 1024)
    answer: list[Reply] = []
    started = time.monotonic()
    upload = threading.Thread(target=lambda: answer.append(client.request("POST", "/v1/detect", body, {"Content-Type": ctype})))
    upload.start()
    waits = []
    while upload.is_alive():  # another client's probes, each on its own connection, while the upload is in
        t = time.monotonic()
        assert client.request("GET", "/healthz", key=False, timeout=30).status == 200
        waits.append(time.monotonic() - t)
    took = time.monotonic() - started
    upload.join()
    error = answer[0].json()["error"]
    assert answer[0].status == 400 and error["kind"] == "bad_multipart", error
    assert "holds its boundary '--b' 349526 times" in error["message"], error
    # Parsed on the event loop before: one probe waited for the whole parse (1.7 s of the upload's 2.0 s here); parsed
    # on a decoding thread, the probes waited 0.08 s at most, and the upload 4.5 s, a thread another client's photo
    # needed; refused from a count of its boundaries, it takes milliseconds.
    assert max(waits) < 0.5 and took < 1.0, (max(waits), took, len(waits))


def live_photos() -> list:
    """Every uploaded photo (`Photo`) alive in this process; an earlier test's photos left in reference cycles (an
    exception's frames) are collected first, as they are no waiting ones."""
    import gc

    from bbuvl.serve.engine import Photo

    gc.collect()
    return [o for o in gc.get_objects() if type(o) is Photo]


def photos_since(earlier: list) -> list:
    """The photos alive now that are not among `earlier`: another test's server may still hold its own (a request in
    flight on another thread), and held in `earlier`, none of them can die and hand its id to a new one."""
    return [o for o in live_photos() if not any(o is e for e in earlier)]


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_photos_waiting_for_their_batch_do_not_hold_the_uploads_full_pixels(serve):
    import io

    from PIL import Image

    from tests.serve.client import multipart

    earlier = live_photos()
    client = serve(max_batch=9, max_wait_ms=120_000)  # eight photos wait for a ninth, or 2 min
    buf = io.BytesIO()
    Image.new("RGB", (2200, 2200), (120, 40, 200)).save(buf, "PNG")  # 4.8 MP, under the pixel limit (5 MP here)
    body, ctype = multipart("image", "big.png", buf.getvalue())
    uploads = [threading.Thread(target=client.request, args=("POST", "/v1/detect", body, {"Content-Type": ctype}))
               for _ in range(8)]
    for t in uploads:
        t.start()
    deadline = time.monotonic() + 90  # eight 4.8 MP decodes: about a second on an idle machine, 15 s were short of it

    while len(waiting := photos_since(earlier)) < 8:
        assert time.monotonic() < deadline, len(waiting)
        time.sleep(0.1)
    # 14.5 MB of RGB each before, for the few-shot crops a server without --fewshot never cuts: 64 waiting uploads at
    # the pixel limit of a 1 MP frame held 18 GiB
    assert [p.image for p in waiting] == [None] * 8
    assert {p.prepared.image.size for p in waiting} == {p.prepared.image.size for p in waiting[:1]}
    assert max(waiting[0].prepared.image.size) < 2200
    client.request("POST", "/v1/detect", body, {"Content-Type": ctype})  # the ninth: the batch runs, all are answered
    for t in uploads:
        t.join()


def test_an_idle_server_holds_no_photo_it_has_answered(serve, photos):
    from tests.serve.client import multipart

    earlier = live_photos()
    client = serve(max_batch=4, max_wait_ms=5)
    body, ctype = multipart("image", "a.png", photos[0].read_bytes())
    for _ in range(3):
        assert client.request("POST", "/v1/detect", body, {"Content-Type": ctype}).status == 200
    # The batcher's worker kept its last batch (photo frames and encoded inputs) in its loop's names while it waited
    # for the next request: one photo held by an idle server
    assert photos_since(earlier) == []


OPEN_STRING = b'{"image": "' + b'\\"' * 200_000  # a string never closed, holding 200,000 escaped quotes
NAMES = (b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\ncontent-disposition:' + b"name=image;" * 40_000
         + b"\r\n--b--\r\n")  # a text part 'image' holding a line that looks like its header, its name over and over


@pytest.mark.parametrize("path, body, ctype, kind", [
    ("/v1/detect", OPEN_STRING, "application/json", "invalid_json"),
    ("/v1/chat/completions", OPEN_STRING, "application/json", "invalid_json"),
    ("/v1/detect", NAMES, "multipart/form-data; boundary=b", "missing_image"),
])
def test_a_body_that_a_search_would_scan_again_and_again_is_refused_at_once(serve, path, body, ctype, kind):
    client = serve()
    t = time.monotonic()
    # Minutes of a decoding thread each before (the time grew with the square of the body's size: 80 KB of the
    # string took 19 s, 88 KB of the line 3 s), past the request's --timeout, and a thread cannot be stopped: two such
    # bodies held every decoding thread, and every other client's photo waited behind them
    r = client.request("POST", path, body, {"Content-Type": ctype}, timeout=30)
    took = time.monotonic() - t
    assert r.status == 400 and r.json()["error"]["kind"] == kind, r.body
    assert took < 2.0, took
