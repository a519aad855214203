"""The page's Events tab in a real browser (Chromium, as tests/service/test_browser.py, with the
test pipeline instead of the models): a track logged while the page is open appears at once,
a watch-list identity marked as an alert and counted on the tab, and the list filters by
camera."""

from __future__ import annotations

import time

from lrface.search.store import EventRecord
from lrface.service.app import ServiceConfig, create_app
from tests.service import test_app, test_browser
from tests.service.test_browser import KEY, running

browser, pipeline, store = test_browser.browser, test_app.pipeline, test_app.store


def _event(camera: str, track: int, identity: str | None) -> EventRecord:
    jpeg = test_app.png(test_app.scene(("red", 20, 20, 60)))  # any image the page can show
    return EventRecord(camera, "r", track, time.time(), identity, 0.8, 0.5, {}, jpeg)


def test_events_tab_shows_new_tracks_live_and_filters(store, pipeline, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    store.add_event(_event("yard", 1, None))
    with running(create_app(store, pipeline, ServiceConfig(api_key=KEY))) as url:
        wait = WebDriverWait(browser, 60)
        browser.get(url + "/")
        wait.until(ec.visibility_of_element_located((By.ID, "api-key"))).send_keys(KEY + "\n")
        time.sleep(2.5)  # the live feed retries with the key (every 2 s)
        store.add_event(_event("door", 2, "Jane Doe"))  # while the Search tab is open
        badge = browser.find_element(By.ID, "events-badge")
        wait.until(lambda _: badge.text == "(1)")
        browser.find_element(By.ID, "tab-events").click()
        rows = lambda: browser.find_elements(By.CSS_SELECTOR, "#events-list .event")  # noqa: E731
        wait.until(lambda _: len(rows()) == 2)
        assert "alert" in rows()[0].get_attribute("class") and "Jane Doe" in rows()[0].text
        assert badge.text == ""
        store.add_event(_event("door", 3, None))
        wait.until(lambda _: len(rows()) == 3)
        assert rows()[0].text.startswith("unknown") and "door" in rows()[0].text
        browser.find_element(By.ID, "events-camera").send_keys("yard")
        browser.find_element(By.ID, "events-apply").click()
        wait.until(lambda _: len(rows()) == 1 and "yard" in rows()[0].text)
        img = rows()[0].find_element(By.TAG_NAME, "img")
        wait.until(lambda _: (img.get_attribute("src") or "").startswith("blob:"))
