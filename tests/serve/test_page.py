"""The inspector's page in headless Chromium: a photo dropped in, its boxes drawn and its findings listed."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no Chromium here: install Debian's `chromium` and `chromium-driver` to run the page test")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (it is in the dev extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_a_dropped_photo_gets_its_boxes_drawn_and_findings_listed(browser, serve, photos):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = serve()
    expected = client.detect_file(photos[0]).json()["objects"]
    assert expected
    browser.get(client.base + "/")
    browser.find_element(By.ID, "api-key").send_keys(client.key)
    browser.find_element(By.ID, "file").send_keys(str(photos[0]))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "canvas").get_attribute("data-boxes"))
    assert browser.find_element(By.ID, "canvas").get_attribute("data-boxes") == str(len(expected))
    items = browser.find_elements(By.CSS_SELECTOR, "#findings li")
    assert len(items) == len(expected)
    listed = " ".join(li.text for li in items)
    assert all(o["label"] in listed for o in expected)
    assert browser.execute_script("return window.localStorage.length + document.cookie.length") == 0  # key in memory only


def test_a_wrong_key_shows_the_servers_error(browser, serve, photos):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client = serve()
    browser.get(client.base + "/")
    browser.find_element(By.ID, "api-key").send_keys("not-the-right-key-at-all")
    browser.find_element(By.ID, "file").send_keys(str(photos[0]))
    WebDriverWait(browser, 30).until(lambda d: "401" in d.find_element(By.ID, "status").text)
    assert "API key" in browser.find_element(By.ID, "status").text
