"""Work a request costs the server happens off the event loop: while one client's upload is parsed, another client's
requests are answered, over real HTTP on localhost."""

from __future__ import annotations

import threading
import time

from tests.serve.client import Reply


def hostile_multipart(size: int) -> tuple[bytes, str]:
    """A multipart body of `size` bytes whose file part is the boundary again and again, each time followed by a byte
    that makes it no boundary: the parser steps through it in Python, about a second a megabyte."""
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    return head + b"\r\n--bX" * (size // 6) + b"\r\n--b--\r\n", "multipart/form-data; boundary=b"


def test_a_slow_multipart_body_being_parsed_holds_up_no_other_client(serve):
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
    assert answer[0].status == 400 and answer[0].json()["error"]["kind"] == "not_an_image", answer[0].body
    # Parsed on the event loop before: one probe waited for the whole parse (1.7 s of the upload's 2.0 s here).
    assert max(waits) < took / 3, (max(waits), took, len(waits))
