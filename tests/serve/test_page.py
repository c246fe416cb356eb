"""The inspector's page in headless Chromium: a photo dropped in, its boxes drawn and its findings listed."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.serve.client import Client
from tests.serve.page_proxy import Proxy
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


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
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
    # Each label as it is, or by its gloss where neither the browser nor the server has a font for Chinese
    chinese = "no font for Chinese" not in browser.find_element(By.ID, "status").text
    assert all((o["label"] if chinese else o["gloss"]) in listed for o in expected), listed
    # The verdict heads the findings; its faults are listed first, as the server marks them.
    assert browser.find_element(By.ID, "verdict").get_attribute("class").split() == ["verdict", answer["verdict"]["verdict"]]
    assert [("problem" in li.get_attribute("class")) for li in items] == sorted((o["flagged"] for o in expected), reverse=True)
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


@pytest.mark.parametrize(("review", "fail", "verdict"), [(0.25, 0.5, "pass"), (0.0, 1.0, "review")],
                         ids=["fault-labels-below-review", "fault-labels-at-review"])
def test_the_page_counts_and_highlights_the_verdicts_faults_not_every_fault_label(browser, trained_checkpoint, keys,
                                                                                  photos, tmp_path, review, fail, verdict):
    # A head gives many a box a fault label at a score near 0 (the 2-step head's round to 0). The page counted and drew
    # every fault label as a fault: a photo the server passed with no fault read "pass · 53 objects, 20 faults", its
    # fault labels red down to a score of 8e-05. It now counts and highlights the verdict's faults alone.
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from bbuvl.infer.predictor import Predictor
    from bbuvl.serve.app import create_app
    from bbuvl.serve.engine import Engine
    from tests.infer.test_predictor_verdict import every_label_a_fault
    from tests.serve.conftest import running

    predictor = Predictor.load(trained_checkpoint, device="cpu")
    predictor.faults = every_label_a_fault(tmp_path)  # a 2-step head rarely writes the shipped hierarchy's faults
    judged = Engine(predictor, "head", "final", overrides={"verdict_review": review, "verdict_fail": fail})
    with running(create_app(judged, keys)) as client:
        answers = [(p, client.detect_file(p).json()) for p in photos]
        photo, answer = next(((p, a) for p, a in answers if any(o["fault"] for o in a["objects"])), (None, None))
        assert answer is not None, "no photo with a fault label: nothing here tells a fault label from a fault"
        assert answer["verdict"]["verdict"] == verdict, answer["verdict"]
        flagged = [o for o in answer["objects"] if o["flagged"]]
        assert sorted((o["label"], o["score"]) for o in flagged) == sorted(
            (f["label"], f["score"]) for f in answer["verdict"]["faults"])
        assert bool(flagged) == (verdict != "pass")
        browser.get(f"http://inspector:{client.key}@{client.host}:{client.port}/")
        browser.find_element(By.ID, "file").send_keys(str(photo))
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "canvas").get_attribute("data-boxes")
                                         or "error" in d.find_element(By.ID, "status").get_attribute("class"))
        status = browser.find_element(By.ID, "status").text
        assert f"{len(answer['objects'])} 个目标 · objects, {len(flagged)} 个问题 · faults" in status, status
        items = browser.find_elements(By.CSS_SELECTOR, "#findings li")
        assert [("problem" in li.get_attribute("class")) for li in items] == [True] * len(flagged) + [False] * (
            len(items) - len(flagged))
        assert len(browser.find_elements(By.CSS_SELECTOR, "#findings li.problem .tag.state")) == len(flagged)


def test_a_wrong_key_or_none_gets_no_page(browser, serve):
    from selenium.webdriver.common.by import By

    client = serve()
    for address in (f"http://inspector:not-the-right-key-at-all@{client.host}:{client.port}/", client.base + "/"):
        browser.get(address)  # headless: nobody answers the browser's key prompt
        assert not browser.find_elements(By.ID, "drop"), address
    metrics = client.request("GET", "/metrics").body.decode()
    assert 'bbuvl_requests_total{route="/",status="200"}' not in metrics
    assert 'bbuvl_requests_total{route="/",status="401"}' in metrics


def _bad_gateway(request: bytes, status: int, head: dict, body: bytes) -> tuple[int, dict, bytes]:
    """What nginx in front answers for a detection when the server behind it is down: its own HTML 502 page."""
    return 502, {"Content-Type": "text/html"}, b"<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_proxys_html_error_page_is_shown_by_its_status_not_as_a_parse_error(browser, serve, photos):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = serve()
    proxy = Proxy(client.base, _bad_gateway)
    try:
        browser.get(f"http://inspector:{client.key}@127.0.0.1:{proxy.port}/")
        browser.find_element(By.ID, "file").send_keys(str(photos[0]))
        WebDriverWait(browser, 30).until(lambda d: "error" in d.find_element(By.ID, "status").get_attribute("class"))
        said = browser.find_element(By.ID, "status").text
        assert said.startswith("502 Bad Gateway") and "not the server's JSON" in said and "SyntaxError" not in said, said
    finally:
        proxy.close()


class _BusyOnce:
    """A server in front that answers the first detection 503 queue_full, as a full queue does, and passes the rest."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: bytes, status: int, head: dict, body: bytes) -> tuple[int, dict, bytes]:
        self.calls += 1
        if self.calls > 1:
            return status, head, body
        busy = {"error": {"kind": "queue_full", "message": "all 64 places in the queue are taken; retry shortly"}}
        return 503, {"Content-Type": "application/json", "Retry-After": "1"}, json.dumps(busy).encode()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_same_photo_chosen_again_after_an_error_is_sent_again(browser, serve, photos):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = serve()
    proxy = Proxy(client.base, _BusyOnce())
    try:
        browser.get(f"http://inspector:{client.key}@127.0.0.1:{proxy.port}/")
        browser.find_element(By.ID, "file").send_keys(str(photos[0]))
        WebDriverWait(browser, 30).until(lambda d: "error" in d.find_element(By.ID, "status").get_attribute("class"))
        assert browser.find_element(By.ID, "status").text.startswith("503 "), browser.find_element(By.ID, "status").text
        # The inspector retries as told, choosing the same photo: the browser saw no new choice, fired no "change", and
        # the page sent nothing, the 503 still on screen
        browser.find_element(By.ID, "file").send_keys(str(photos[0]))
        WebDriverWait(browser, 30).until(lambda d: proxy.posts_done == 2
                                         and d.find_element(By.ID, "canvas").get_attribute("data-boxes"))
        assert browser.find_element(By.ID, "canvas").get_attribute("data-boxes") == str(
            len(client.detect_file(photos[0]).json()["objects"]))
    finally:
        proxy.close()


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


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
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


class _Held:
    """Holds the detection answer to the photo named `name` until `release` is set: an answer that comes late, as a big
    photo's does, at the moment the test chooses."""

    def __init__(self, name: str):
        import threading

        self.filename = f'filename="{name}"'.encode()
        self.arrived, self.release = threading.Event(), threading.Event()

    def __call__(self, request: bytes, status: int, head: dict, body: bytes) -> tuple[int, dict, bytes]:
        if self.filename in request:
            self.arrived.set()
            assert self.release.wait(60), "the held answer was never released"
        return status, head, body


def _shown(driver) -> tuple[int, int, str | None, int, str]:
    """The canvas's size and boxes drawn, the findings listed, and the status line."""
    from selenium.webdriver.common.by import By

    canvas = driver.execute_script("const c = document.getElementById('canvas'); "
                                   "return [c.width, c.height, c.dataset.boxes]")
    listed = len(driver.find_elements(By.CSS_SELECTOR, "#findings li"))
    return (*canvas, listed, driver.find_element(By.ID, "status").text)


def _downloaded(driver, folder, name: str) -> dict:
    """Click "download JSON" (Chromium told to save into `folder`) and read the file `name` it saves."""
    import json
    import time

    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "download").click()
    deadline = time.monotonic() + 10
    while not (folder / name).exists():
        assert time.monotonic() < deadline, f"no {name} saved; there is {sorted(p.name for p in folder.iterdir())}"
        time.sleep(0.05)
    return json.loads((folder / name).read_text())


@contextmanager
def _page_with_a_held_answer(browser, serve, photos,
                             tmp_path) -> Iterator[tuple[Client, Path, Path, _Held, Proxy, Path]]:
    """The page opened through a proxy that holds slow.png's answer (448x336) until told; fast.png (224x168) answers at
    once, and the canvas's size tells which is drawn. Chromium saves downloads into the folder yielded last."""
    from PIL import Image

    client = serve()
    slow, fast = tmp_path / "slow.png", tmp_path / "fast.png"
    with Image.open(photos[1]) as im:
        im.convert("RGB").resize((448, 336)).save(slow)
    fast.write_bytes(photos[0].read_bytes())
    held = _Held(slow.name)
    proxy = Proxy(client.base, held)
    saves = tmp_path / "downloads"
    saves.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(saves)})
    try:
        browser.get(f"http://inspector:{client.key}@127.0.0.1:{proxy.port}/")
        yield client, slow, fast, held, proxy, saves
    finally:
        held.release.set()
        proxy.close()


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_photo_chosen_last_is_shown_and_downloaded_and_an_older_answer_arriving_after_changes_nothing(
        browser, serve, photos, tmp_path):
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with _page_with_a_held_answer(browser, serve, photos, tmp_path) as (client, slow, fast, held, proxy, saves):
        expected = client.detect_file(fast).json()
        browser.find_element(By.ID, "file").send_keys(str(slow))
        assert held.arrived.wait(30)
        browser.find_element(By.ID, "file").send_keys(str(fast))  # chosen while slow.png is still being inspected
        WebDriverWait(browser, 30).until(lambda d: _shown(d)[2] is not None)
        shown = _shown(browser)
        assert shown[:4] == (224, 168, str(len(expected["objects"])), len(expected["objects"])), shown
        assert f"· {len(expected['objects'])} 个目标" in shown[4], shown
        saved = _downloaded(browser, saves, "fast.json")
        assert (saved["width"], saved["height"], saved["objects"]) == (224, 168, expected["objects"])

        # slow.png's answer comes now: before, it was drawn over fast.png's (448x336, its boxes and status line) and
        # "download JSON" saved it as fast.json.
        held.release.set()
        deadline = time.monotonic() + 30
        while proxy.posts_done < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        deadline = time.monotonic() + 3  # what the page would do with it takes well under a second
        while time.monotonic() < deadline:
            assert _shown(browser) == shown
            time.sleep(0.1)
        (saves / "fast.json").unlink()
        saved = _downloaded(browser, saves, "fast.json")
        assert (saved["width"], saved["height"], saved["objects"]) == (224, 168, expected["objects"])


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_download_is_off_while_a_photo_is_inspected_so_the_one_before_is_never_saved_under_its_name(
        browser, serve, photos, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with _page_with_a_held_answer(browser, serve, photos, tmp_path) as (client, slow, fast, held, proxy, saves):
        expected = client.detect_file(slow).json()
        browser.find_element(By.ID, "file").send_keys(str(fast))
        WebDriverWait(browser, 30).until(lambda d: _shown(d)[2] is not None)
        browser.find_element(By.ID, "file").send_keys(str(slow))
        assert held.arrived.wait(30)
        # fast.png's findings are still on the page: before, "download JSON" saved them as slow.json.
        button = browser.find_element(By.ID, "download")
        assert not button.is_enabled()
        button.click()
        held.release.set()
        WebDriverWait(browser, 30).until(lambda d: _shown(d)[:2] == (448, 336))
        assert button.is_enabled()
        saved = _downloaded(browser, saves, "slow.json")
        assert (saved["width"], saved["height"], saved["objects"]) == (448, 336, expected["objects"])
        assert sorted(p.name for p in saves.iterdir()) == ["slow.json"]


def _hierarchy_without(tmp_path, label: str):
    """The shipped hierarchy without `label`'s category: that label is one it cannot read (Faults.unjudgeable)."""
    import json

    from bbuvl.data.faults import Faults
    from tests.infer.test_predictor_verdict import DEFAULT_HIERARCHY

    raw = json.loads(DEFAULT_HIERARCHY.read_text(encoding="utf-8"))
    del raw["categories"][label.split("/")[0]]
    path = tmp_path / "without.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    return Faults.load(path)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_a_box_that_sent_its_photo_to_review_is_drawn_listed_and_counted_as_such(browser, trained_checkpoint, keys,
                                                                                   photos, tmp_path):
    # A box whose label the hierarchy cannot read sends its photo to review ("a box's label is none the hierarchy can
    # judge"). Its object said nothing of it: the page drew it green as a sound part and read "review · 8 objects,
    # 0 faults", only the reason's words naming it. The server now marks it "unjudgeable", and the page draws it
    # orange, lists it after the faults with a tag and counts it in the status line.
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from bbuvl.infer.predictor import Predictor
    from bbuvl.serve.app import create_app
    from bbuvl.serve.engine import Engine
    from tests.serve.conftest import running

    predictor = Predictor.load(trained_checkpoint, device="cpu")
    [result] = predictor.predict([str(photos[0])], "head")
    assert result.objects, "no box to judge"
    predictor.faults = _hierarchy_without(tmp_path, result.objects[0].label)
    # A 2-step head scores its boxes about 4e-6, written 0: below the default review threshold they send no photo to
    # review, as a fault of that score would not (before, at any score: every photo of such a head went to review).
    with running(create_app(Engine(predictor, "head", "final"), keys)) as client:
        answer = client.detect_file(photos[0]).json()
        assert answer["verdict"]["verdict"] == "pass", answer["verdict"]
        assert not any(o["unjudgeable"] for o in answer["objects"])
    low = Engine(predictor, "head", "final", overrides={"verdict_review": 0.0, "verdict_fail": 1.0})
    with running(create_app(low, keys)) as client:
        answer = client.detect_file(photos[0]).json()
        assert answer["verdict"]["verdict"] == "review", answer["verdict"]
        assert "none the hierarchy can judge" in answer["verdict"]["reason"]
        unjudged = [o["unjudgeable"] for o in answer["objects"]]
        # Only a box scoring at least review sends the photo there, as a fault of its score would (infer/verdict.py)
        assert unjudged == [predictor.faults.unjudgeable(o["label"]) for o in answer["objects"]]
        assert any(unjudged) and not any(o["flagged"] for o in answer["objects"])
        browser.get(f"http://inspector:{client.key}@{client.host}:{client.port}/")
        browser.find_element(By.ID, "file").send_keys(str(photos[0]))
        WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "canvas").get_attribute("data-boxes")
                                         or "error" in d.find_element(By.ID, "status").get_attribute("class"))
        status = browser.find_element(By.ID, "status").text
        assert f"0 个问题 · faults, {sum(unjudged)} 个无法判读 · unjudged labels" in status, status
        items = browser.find_elements(By.CSS_SELECTOR, "#findings li")
        assert [("unjudgeable" in li.get_attribute("class")) for li in items] == sorted(unjudged, reverse=True)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#findings li.unjudgeable .tag.unjudgeable")) == sum(unjudged)
        # The last box drawn lies over the others: its frame's left edge is in its own colour, orange, not green.
        last = answer["objects"][-1]
        assert last["unjudgeable"], last
        x1, y1, _, y2 = last["bbox_2d"]
        rgb = browser.execute_script("return Array.from(document.getElementById('canvas').getContext('2d')"
                                     ".getImageData(arguments[0], arguments[1], 1, 1).data.slice(0, 3))",
                                     min(int(x1), answer["width"] - 1), int((y1 + y2) / 2))
        assert max(abs(a - b) for a, b in zip(rgb, (0xC2, 0x41, 0x0C))) < 40, rgb


def _turned_photo(path, fmt: str, orientation: int):
    """A 400x300 photo stored with a red patch in its top-left corner, whose EXIF says to turn it by `orientation`."""
    from PIL import Image

    im = Image.new("RGB", (400, 300), (200, 200, 200))
    im.paste((255, 0, 0), (0, 0, 120, 90))
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, fmt, exif=exif.tobytes())
    return path


@pytest.mark.parametrize(("name", "fmt", "orientation"), [("turned.webp", "WEBP", 6), ("turned8.webp", "WEBP", 8),
                                                          ("turned.jpg", "JPEG", 6)])
@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_the_boxes_are_drawn_on_the_photo_turned_as_the_server_turned_it(browser, serve, tmp_path, name, fmt,
                                                                         orientation):
    # The server turns a photo upright by its EXIF orientation and answers boxes in that frame; Chromium ignores a
    # WebP's orientation, so the page drew a 400x300 picture lying as stored under boxes meant for a 300x400 one,
    # across the wrong parts. The answer now says the turn ("orientation"), and the page turns a picture the browser
    # left as stored itself; one the browser turned (a JPEG) is drawn as it is, not turned twice.
    from PIL import Image, ImageOps
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = _turned_photo(tmp_path / name, fmt, orientation)
    client = serve()
    answer = client.detect_file(photo).json()
    assert (answer["width"], answer["height"], answer["orientation"]) == (300, 400, orientation)
    browser.get(f"http://inspector:{client.key}@{client.host}:{client.port}/")
    browser.find_element(By.ID, "file").send_keys(str(photo))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "canvas").get_attribute("data-boxes")
                                     or "error" in d.find_element(By.ID, "status").get_attribute("class"))
    assert browser.execute_script("const c = document.getElementById('canvas'); return [c.width, c.height]") == [300, 400]
    # Which quarter of the picture is red, on the page and in the photo turned upright: boxes drawn over it leave most
    # of a quarter's sampled pixels as they were.
    red = browser.execute_script("""
        const c = document.getElementById('canvas'), ctx = c.getContext('2d'), out = [];
        for (const [qx, qy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
          let n = 0;
          for (let i = 0; i < 5; i++) for (let j = 0; j < 5; j++) {
            const [r, g] = ctx.getImageData(qx * 270 + 5 + i * 5, qy * 370 + 5 + j * 5, 1, 1).data;
            if (r > 200 && g < 80) n += 1;
          }
          out.push(n > 12);
        }
        return out;""")
    upright = ImageOps.exif_transpose(Image.open(photo))
    expected = [upright.getpixel((qx * 270 + 15, qy * 370 + 15))[1] < 80 for qx, qy in [(0, 0), (1, 0), (0, 1), (1, 1)]]
    assert red == expected and sum(expected) == 1, (red, expected)


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_without_a_font_for_chinese_the_page_shows_each_label_by_its_gloss_and_says_so(browser, serve, photos):
    # Reports fall back to English glosses without a CJK font, with a warning; the page drew every label as a row of
    # blank boxes, on the picture and in the list, when neither the browser nor the server (/font/cjk) had one.
    import re

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = serve()
    answer = client.detect_file(photos[0]).json()
    assert answer["objects"] and all(o["gloss"] for o in answer["objects"])
    browser.get(f"http://inspector:{client.key}@{client.host}:{client.port}/")
    browser.find_element(By.ID, "file").send_keys(str(photos[0]))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "canvas").get_attribute("data-boxes")
                                     or "error" in d.find_element(By.ID, "status").get_attribute("class"))
    # Whether this browser, with the server's font if it has one, draws two Chinese characters differently
    chinese = browser.execute_async_script("""
        const done = arguments[0];
        document.fonts.load('16px "bbuvl-cjk"', "螺柜").catch(() => null).then(() => {
          const c = document.createElement("canvas"), ctx = c.getContext("2d");
          c.width = c.height = 40;
          ctx.font = '24px ' + getComputedStyle(document.body).fontFamily;
          const px = (ch) => { ctx.clearRect(0, 0, 40, 40); ctx.fillText(ch, 4, 30); return ctx.getImageData(0, 0, 40, 40).data.join(); };
          done(px("螺") !== px("柜"));
        });""")
    need("no-cjk-font", not chinese,
         "this browser or the server has a font for Chinese: the page shows labels as they are (the first test)")
    status = browser.find_element(By.ID, "status").text
    assert "no font for Chinese" in status, status
    items = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#findings li")]
    assert len(items) == len(answer["objects"])
    for o in answer["objects"]:
        assert any(o["gloss"] in text for text in items), (o, items)
    assert not any(re.search(r"[\u2e80-\u9fff]", text) for text in items), items
