"""The inspector's page in headless Chromium: a photo dropped in, its boxes drawn and its findings listed."""

from __future__ import annotations

import pytest

from tests.system import CHROMEDRIVER, CHROMIUM, need


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    need("chromium", CHROMIUM is not None and CHROMEDRIVER is not None,
         "no Chromium here: install Debian's `chromium` and `chromium-driver` (scripts/system_packages.sh chromium)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (it is in the dev extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                # its profile among the test's files: left to itself it made one in /tmp per run and never removed it
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_a_dropped_photo_gets_its_boxes_drawn_and_findings_listed(browser, serve, photos):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = serve()
    answer = client.detect_file(photos[0]).json()
    expected = answer["objects"]
    assert expected
    # The key as the password of the URL: what the browser sends when it answers the page's Basic challenge,
    # and what it then keeps in its credential cache for the page's own files and requests.
    browser.get(f"http://inspector:{client.key}@{client.host}:{client.port}/")
    browser.find_element(By.ID, "file").send_keys(str(photos[0]))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "canvas").get_attribute("data-boxes")
                                     or "error" in d.find_element(By.ID, "status").get_attribute("class"))
    assert browser.find_element(By.ID, "canvas").get_attribute("data-boxes") == str(len(expected)), \
        browser.find_element(By.ID, "status").text
    items = browser.find_elements(By.CSS_SELECTOR, "#findings li")
    assert len(items) == len(expected)
    listed = " ".join(li.text for li in items)
    assert all(o["label"] in listed for o in expected)
    # The verdict heads the findings; faults are listed first, as the server marks them.
    assert browser.find_element(By.ID, "verdict").get_attribute("class").split() == ["verdict", answer["verdict"]["verdict"]]
    assert [("problem" in li.get_attribute("class")) for li in items] == sorted((o["fault"] for o in expected), reverse=True)
    # The page holds no key of its own: nothing in storage, cookies or the address it shows.
    assert browser.execute_script("return window.localStorage.length + document.cookie.length") == 0
    assert client.key not in browser.execute_script("return location.href + document.documentElement.outerHTML")
    # The font and the detection request, whose addresses hold no key, carried the one the browser keeps for the
    # origin from the first answer on. (The page's files, linked from an address holding the key, are asked once
    # without it: Chromium sends a URL's own credentials only when challenged.)
    metrics = client.request("GET", "/metrics").body.decode()
    for route in ("/font/cjk", "/v1/detect"):
        assert f'bbuvl_requests_total{{route="{route}",status="401"}}' not in metrics, route
    assert 'bbuvl_requests_total{route="/static",status="200"}' in metrics
    assert 'bbuvl_requests_total{route="/v1/detect",status="200"} 2.0' in metrics


def test_a_wrong_key_or_none_gets_no_page(browser, serve):
    from selenium.webdriver.common.by import By

    client = serve()
    for address in (f"http://inspector:not-the-right-key-at-all@{client.host}:{client.port}/", client.base + "/"):
        browser.get(address)  # headless: nobody answers the browser's key prompt
        assert not browser.find_elements(By.ID, "drop"), address
    metrics = client.request("GET", "/metrics").body.decode()
    assert 'bbuvl_requests_total{route="/",status="200"}' not in metrics
    assert 'bbuvl_requests_total{route="/",status="401"}' in metrics


class _Proxy:
    """A reverse proxy in front of the server, as nginx is in production: it passes every GET through, and answers
    the detection request with its own HTML 502 page, as it does when the server behind it is down."""

    def __init__(self, upstream: str):
        import http.server
        import threading
        import urllib.error
        import urllib.request

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept")}
                try:
                    with urllib.request.urlopen(urllib.request.Request(upstream + self.path, headers=headers)) as r:
                        status, head, body = r.status, r.headers, r.read()
                except urllib.error.HTTPError as e:
                    status, head, body = e.code, e.headers, e.read()
                self.send_response(status)
                for k, v in head.items():
                    if k.lower() in ("content-type", "www-authenticate", "cache-control"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b"<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
                self.send_response(502, "Bad Gateway")
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_proxys_html_error_page_is_shown_by_its_status_not_as_a_parse_error(browser, serve, photos):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = serve()
    proxy = _Proxy(client.base)
    try:
        browser.get(f"http://inspector:{client.key}@127.0.0.1:{proxy.port}/")
        browser.find_element(By.ID, "file").send_keys(str(photos[0]))
        WebDriverWait(browser, 30).until(lambda d: "error" in d.find_element(By.ID, "status").get_attribute("class"))
        said = browser.find_element(By.ID, "status").text
        assert said.startswith("502 Bad Gateway") and "not the server's JSON" in said and "SyntaxError" not in said, said
    finally:
        proxy.server.shutdown()


def test_a_photo_past_the_body_limit_shows_the_limit_and_the_option_that_raises_it(browser, serve, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.serve.big_jpeg import big_jpeg

    client = serve(max_body_mb=0.5)
    photo = tmp_path / "phone.jpg"
    photo.write_bytes(big_jpeg((1600, 1600), 700_000))  # 0.67 MiB
    browser.get(f"http://inspector:{client.key}@{client.host}:{client.port}/")
    browser.find_element(By.ID, "file").send_keys(str(photo))
    WebDriverWait(browser, 30).until(lambda d: "error" in d.find_element(By.ID, "status").get_attribute("class"))
    said = browser.find_element(By.ID, "status").text
    assert said.startswith("413 the body is 0.7 MiB") and "at most 0.5 MiB" in said, said
    assert "`bbuvl serve --max-body-mb N` (N in MiB)" in said, said


def test_a_photo_the_browser_cannot_show_still_gets_its_findings_listed(browser, serve, photos, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = serve()
    tiff = tmp_path / "cabinet.tif"  # the server reads TIFF; Chromium shows none
    Image.open(photos[0]).convert("RGB").save(tiff)
    expected = client.detect_file(tiff).json()["objects"]
    assert expected
    browser.get(f"http://inspector:{client.key}@{client.host}:{client.port}/")
    browser.find_element(By.ID, "file").send_keys(str(tiff))
    # Before: the picture never loaded, nothing was listed and the status said "inspecting" for ever.
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "canvas").get_attribute("data-boxes") is not None)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#findings li")) == len(expected)
    status = browser.find_element(By.ID, "status")
    assert "cannot show image/tiff" in status.text and "error" not in (status.get_attribute("class") or ""), status.text
