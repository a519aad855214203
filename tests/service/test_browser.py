"""The web page in a real browser: Debian's Chromium driven by Selenium against ``lrface serve``'s
app (uvicorn on a loopback port, MTCNN + the dlib teacher, LFW photos). Two people are enrolled
through the page, a shrunk photo of one is searched, and the right name must come first.

Skips when Chromium or chromedriver is missing, unless ``LRFACE_REQUIRE_BROWSER=1`` (``.ci/run``
sets it after installing them), where that is a failure. The screenshot is saved in the test's
temporary directory, and also at ``$LRFACE_SCREENSHOT`` when set (how docs/service-page.png
was made: ``LRFACE_SCREENSHOT=docs/service-page.png pytest tests/service/test_browser.py``).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
KEY = "browser-test-key-0123456789"


def _need_browser() -> None:
    if CHROMIUM and CHROMEDRIVER:
        return
    reason = "Chromium or chromedriver not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("LRFACE_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + ", and LRFACE_REQUIRE_BROWSER=1")
    pytest.skip(reason)


@pytest.fixture
def server(tmp_path):
    """The app on a free loopback port, in a thread; yields its base URL."""
    import torch
    import uvicorn

    from lrface.detect.mtcnn import MTCNN
    from lrface.detect.weights import WeightsUnavailableError
    from lrface.models.factory import create_encoder
    from lrface.pipeline import FacePipeline, default_calibrations
    from lrface.search.store import SqliteStore
    from lrface.service.app import ServiceConfig, create_app

    torch.set_num_threads(1)
    try:
        detector = MTCNN(min_face=12)
    except WeightsUnavailableError as exc:
        pytest.skip(f"MTCNN weights cannot be fetched (no network?): {exc}")
    pipe = FacePipeline(detector, create_encoder("dlib-resnet-torch"), multi_face="all")
    store = SqliteStore.create(tmp_path / "watch.db", pipe.teacher.cache_key, pipe.dim)
    calibrations = default_calibrations("dlib-resnet-torch", None)
    app = create_app(store, pipe, ServiceConfig(api_key=KEY), calibrations)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    thread.join(timeout=10)
    store.close()


@pytest.fixture
def browser(tmp_path):
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.mark.lfw
def test_enroll_two_people_and_find_the_right_one_from_a_small_probe(
    lfw_root, server, browser, tmp_path
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    people = {
        "George W Bush": [
            "George_W_Bush/George_W_Bush_0001.jpg",
            "George_W_Bush/George_W_Bush_0002.jpg",
        ],
        "Serena Williams": [
            "Serena_Williams/Serena_Williams_0001.jpg",
            "Serena_Williams/Serena_Williams_0002.jpg",
        ],
    }
    probe = tmp_path / "probe.png"  # 250 -> 60 px: the face is about 24 px wide
    Image.open(lfw_root / "George_W_Bush/George_W_Bush_0003.jpg").resize(
        (60, 60), Image.Resampling.BOX
    ).save(probe)

    wait = WebDriverWait(browser, 180)  # generous: the CPU may be shared
    browser.get(server + "/")
    key = wait.until(ec.visibility_of_element_located((By.ID, "api-key")))  # auth is on
    key.send_keys(KEY + "\n")
    browser.find_element(By.ID, "tab-enroll").click()
    for name, photos in people.items():
        browser.find_element(By.ID, "enroll-name").send_keys(name)
        browser.find_element(By.ID, "enroll-files").send_keys(
            "\n".join(str(lfw_root / p) for p in photos)
        )
        browser.find_element(By.ID, "enroll-submit").click()
        result = browser.find_element(By.ID, "enroll-result")
        wait.until(lambda _, r=result: "ok" in r.get_attribute("class").split())
        assert result.text == f"Enrolled 2 photo(s) of {name}."

    browser.find_element(By.ID, "tab-people").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#people-list .person img")) == 2)
    assert browser.save_screenshot(str(tmp_path / "watch-list-people.png"))

    browser.find_element(By.ID, "tab-search").click()
    browser.find_element(By.ID, "search-file").send_keys(str(probe))
    wait.until(ec.visibility_of_element_located((By.ID, "search-results")))
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#faces .match-name")]
    assert names == ["George W Bush", "Serena Williams"]
    served = browser.find_element(By.CSS_SELECTOR, "#faces .served").text
    assert "px wide" in served and "dlib-resnet-torch" in served
    decision = browser.find_element(By.CSS_SELECTOR, "#faces .decision").text
    assert decision.startswith(("Match: George W Bush", "Unknown:"))  # the teacher's threshold
    assert len(browser.find_elements(By.CSS_SELECTOR, "#probe-boxes rect")) == 1
    wait.until(
        lambda b: b.execute_script(
            "return [...document.querySelectorAll('#faces img')].every(i => i.complete)"
        )
    )

    shot = tmp_path / "watch-list-page.png"
    assert browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] >= 1000
    if os.environ.get("LRFACE_SCREENSHOT"):
        out = Path(os.environ["LRFACE_SCREENSHOT"])
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(shot).convert("RGB").quantize(colors=128).save(out, optimize=True)

    # remove one person from the watch-list page (after the confirmation dialog)
    names_js = "return [...document.querySelectorAll('.person .name')].map(e => e.textContent)"
    browser.find_element(By.ID, "tab-people").click()
    wait.until(lambda b: len(b.execute_script(names_js)) == 2)
    # clicked by script: the list may be re-rendered between finding the button and a click
    remove_js = (
        "const b = document.querySelector(\"button.danger[data-name='Serena Williams']\");"
        "if (b) setTimeout(() => b.click(), 0); return !!b;"
    )
    wait.until(lambda b: b.execute_script(remove_js))
    wait.until(ec.alert_is_present()).accept()
    wait.until(lambda b: b.execute_script(names_js) == ["George W Bush"])
