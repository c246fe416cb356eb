"""The inspector's page shows labels, few-shot names, a verdict's reason and a file name as text: each is data (a
vendor's label, a support folder's name, a model's answer, a photo's name), and none may ever run as script."""

from __future__ import annotations

import json

import pytest

from tests.serve.page_proxy import Proxy
from tests.serve.test_page import browser  # noqa: F401 - the headless Chromium fixture

HOSTILE = ["<img src=x onerror=\"window.pwned=1\">", "</li><script>window.pwned=2</script>", "\"><svg onload=window.pwned=3>"]


def _hostile(request: bytes, status: int, head: dict, body: bytes) -> tuple[int, dict, bytes]:
    """The detection answer with hostile labels, few-shot names and reason: what the page gets from a model trained on
    such labels, or from a support folder named so."""
    if status == 200:
        found = json.loads(body)
        for i, o in enumerate(found["objects"]):
            o["label"] = HOSTILE[i % len(HOSTILE)]
            o["unknown"] = i % 2 == 1
            o["fewshot"] = {"label": HOSTILE[(i + 1) % len(HOSTILE)], "score": 0.5} if o["unknown"] else None
        found["verdict"]["reason"] = HOSTILE[1]
        found["verdict"]["verdict"] = HOSTILE[2]
        body = json.dumps(found).encode()
    return status, head, body


@pytest.mark.slow  # the default run keeps under 10 minutes (docs/design.md, "The test run's time")
def test_hostile_labels_reason_and_file_name_are_shown_as_text_and_never_run(browser, serve, photos, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = serve()
    proxy = Proxy(client.base, _hostile)
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
        proxy.close()
