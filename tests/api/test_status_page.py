"""The status page in a real headless Chromium (Debian's `chromium`, driven by selenium): it loads,
signs in with an API key, shows a connection's state, refreshes itself, and its replay button
puts a dead letter back in line. Without Chromium it skips on a laptop and fails under CI=true."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from bookingsync.adapters.base import RawRecord
from bookingsync.models.tables import DeliveryRow
from bookingsync.worker import quarantine, store
from bookingsync.worker.db import make_engine, transaction, upgrade
from tests.api.conftest import READ_KEY, WRITE_KEY, Served, serving
from tests.conftest import service_missing

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
WAIT = 20  # seconds for a page to show what is expected


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        service_missing(
            "Chromium", f"{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture
def page_app(tmp_path: Path) -> Iterator[Served]:
    engine = make_engine(f"sqlite:///{tmp_path / 'page.db'}")
    upgrade(engine)
    with serving(engine) as running:
        with transaction(engine) as session:
            store.save_cursor(session, "leezy-main", {"since": "2026-03-01T00:00:00Z"}, running.clock.now())
        running.clock.advance(90)
        yield running
    engine.dispose()


def sign_in(driver, url: str, key: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    driver.find_element(By.CSS_SELECTOR, "[data-testid=key]").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "[data-testid=sign-in]").click()


def refreshed_read(wait, read):
    """`read(driver)` of the page as shown: the page reloads itself every few seconds, and an element
    found on one load is stale on the next, so a read that met a reload is made again on the new page."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt(driver):
        try:
            return read(driver)
        except StaleElementReferenceException:
            return None

    return wait.until(attempt)


def test_the_page_shows_connections_refreshes_itself_and_replays_a_dead_letter(
    browser, page_app: Served, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    driver, wait = browser, WebDriverWait(browser, WAIT)
    driver.get(page_app.url + "/")
    assert driver.find_elements(By.CSS_SELECTOR, "[data-testid=sign-in]"), "the page asks for a key first"
    sign_in(driver, page_app.url, WRITE_KEY)
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=connection-leezy-main]")))

    # The connection's state: provider, last poll 90 s ago, lag, the open quarantine item.
    cells = refreshed_read(
        wait,
        lambda d: [
            cell.text
            for cell in d.find_element(By.CSS_SELECTOR, "[data-testid=connection-leezy-main]")
            .find_element(By.XPATH, "./ancestor::tr")
            .find_elements(By.TAG_NAME, "td")
        ],
    )
    assert cells[1] == "leezy" and cells[2] == "enabled"
    assert "(90s ago)" in cells[3] and cells[4] == "90s" and cells[9] == "1"
    # hasStarted/hasEnded of both meetings (the moved one's old pair was cancelled).
    timers = refreshed_read(wait, lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=timers]").text)
    assert timers.startswith("4 pending timer(s)")
    driver.save_screenshot(str(tmp_path / "status.png"))

    # It refreshes itself: a record quarantined now appears without anyone reloading.
    with transaction(page_app.rt.engine) as session:
        quarantine.add(
            session,
            connection="leezy-main",
            record=RawRecord(payload={"id": "late"}, external_id="late"),
            reason="end_time before start_time",
            source="webhook",
            now=page_app.clock.now(),
        )
    wait.until(lambda d: "end_time before start_time" in d.page_source)

    # The replay button puts the dead letter back in line.
    with transaction(page_app.rt.engine) as session:
        dead = session.exec(select(DeliveryRow).where(DeliveryRow.status == "dead")).one()
    # Clicked on a page that may reload itself under the click: a stale button is found again.
    refreshed_read(
        wait,
        lambda d: d.find_element(By.CSS_SELECTOR, f"[data-testid=replay-delivery-{dead.id}]").click() or True,
    )
    # The flash is on the page the replay redirects to, and only there: its next reload drops it.
    flash = refreshed_read(
        wait, lambda d: [e.text for e in d.find_elements(By.CSS_SELECTOR, "[data-testid=flash]")]
    )
    assert flash == [f"Delivery {dead.id} is queued again."]
    with transaction(page_app.rt.engine) as session:
        again = session.get(DeliveryRow, dead.id)
        assert again is not None and (again.status, again.attempts) == ("pending", 0)
    assert not driver.find_elements(By.CSS_SELECTOR, f"[data-testid=replay-delivery-{dead.id}]")
    assert "No dead letters." in driver.page_source


def test_a_read_key_sees_the_page_without_buttons(browser, page_app: Served) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    sign_in(browser, page_app.url, READ_KEY)
    WebDriverWait(browser, WAIT).until(
        seen.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=connection-leezy-main]"))
    )
    assert "read only" in browser.page_source
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid^=replay-]")
    browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
    # Signed out once the sign-in form is back; a page asked for before the sign-out lands could
    # cancel it, and the next page would still be the signed-in one with no key field.
    WebDriverWait(browser, WAIT).until(
        seen.presence_of_element_located((By.CSS_SELECTOR, "[data-testid=key]")), "the sign-out"
    )
    sign_in(browser, page_app.url, "not-a-key-" + "x" * 20)
    # The refusal is a new page: read it once the browser has it, not the form the click left.
    refused = "That key is not configured."
    WebDriverWait(browser, WAIT).until(lambda driver: refused in driver.page_source, f"no {refused!r} shown")
    assert refused in browser.page_source
