"""The inspector's page shows labels, few-shot names, a verdict's reason and a file name as text: each is data (a
vendor's label, a support folder's name, a model's answer, a photo's name), and none may ever run as script."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.error
import urllib.request

from tests.serve.test_page import browser  # noqa: F401 - the headless Chromium fixture

HOSTILE = ["<img src=x onerror=\"window.pwned=1\">", "</li><script>window.pwned=2</script>", "\"><svg onload=window.pwned=3>"]


class _Rewriting:
    """A proxy in front of the server whose detection answers carry hostile labels, few-shot names and reason: what
    the page gets from a model trained on such labels, or from a support folder named so."""

    def __init__(self, upstream: str):
        def forward(handler: http.server.BaseHTTPRequestHandler, body: bytes | None) -> tuple[int, dict, bytes]:
            keep = ("authorization", "accept", "content-type")
            headers = {k: v for k, v in handler.headers.items() if k.lower() in keep}
            try:
                with urllib.request.urlopen(urllib.request.Request(upstream + handler.path, data=body,
                                                                   headers=headers)) as r:
                    return r.status, dict(r.headers.items()), r.read()
            except urllib.error.HTTPError as e:
                return e.code, dict(e.headers.items()), e.read()

        def answer(handler: http.server.BaseHTTPRequestHandler, status: int, head: dict, body: bytes) -> None:
            handler.send_response(status)
            for k, v in head.items():
                if k.lower() in ("content-type", "www-authenticate", "content-security-policy", "x-content-type-options"):
                    handler.send_header(k, v)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                answer(self, *forward(self, None))

            def do_POST(self) -> None:  # noqa: N802
                status, head, body = forward(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                if status == 200:
                    found = json.loads(body)
                    for i, o in enumerate(found["objects"]):
                        o["label"] = HOSTILE[i % len(HOSTILE)]
                        o["unknown"] = i % 2 == 1
                        o["fewshot"] = {"label": HOSTILE[(i + 1) % len(HOSTILE)], "score": 0.5} if o["unknown"] else None
                    found["verdict"]["reason"] = HOSTILE[1]
                    found["verdict"]["verdict"] = HOSTILE[2]
                    body = json.dumps(found).encode()
                answer(self, status, head, body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_hostile_labels_reason_and_file_name_are_shown_as_text_and_never_run(browser, serve, photos, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = serve()
    proxy = _Rewriting(client.base)
    photo = tmp_path / "\"><img src=x onerror=window.pwned=4>.png"  # a photo's name is data too
    photo.write_bytes(photos[0].read_bytes())
    try:
        browser.get(f"http://inspector:{client.key}@127.0.0.1:{proxy.port}/")
        browser.find_element(By.ID, "file").send_keys(str(photo))
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "canvas").get_attribute("data-boxes")
                                         or "error" in d.find_element(By.ID, "status").get_attribute("class"))
        assert browser.find_element(By.ID, "canvas").get_attribute("data-boxes"), browser.find_element(By.ID, "status").text
        listed = browser.find_element(By.ID, "findings").text
        assert HOSTILE[0] in listed and HOSTILE[1] in listed
        assert HOSTILE[1] in browser.find_element(By.ID, "verdict").text
        # nothing the answer held became an element, and no handler ran (the server's CSP would block an inline one
        # too: the page is held to both)
        assert not browser.find_elements(By.CSS_SELECTOR, "#result img, #result script, #result svg, #status img")
        assert browser.execute_script("return window.pwned === undefined")
    finally:
        proxy.server.shutdown()
