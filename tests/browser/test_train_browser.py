"""The Train page in a real browser: live LR finder, picking a suggestion, one epoch with its
table, a slider moved during training, Cancel, and two sessions sharing the queue."""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.browser.conftest import wait_for_app_idle

pytestmark = pytest.mark.browser


def open_train(pg, app_url: str, query: str = "") -> None:
    pg.goto(f"{app_url}/train{query}")
    pg.get_by_role("button", name="Train", exact=True).wait_for(timeout=90_000)
    wait_for_app_idle(pg, 60_000)


def progress_text(pg) -> str:
    """The progress bar's text, or "" — the bar can vanish between finding and reading it."""
    try:
        return pg.locator('[data-testid="stProgress"]').first.inner_text(timeout=1_000)
    except PlaywrightError:
        return ""


def percent(text: str) -> int:
    m = re.search(r"(\d+)%", text)
    return int(m.group(1)) if m else -1


def test_lr_finder_live_pick_valley_and_train_one_epoch(page, app_url):
    open_train(page, app_url, "?epochs=1")
    page.get_by_role("button", name="Find a learning rate").click()
    seen = set()
    t0 = time.time()
    while time.time() - t0 < 120 and not page.get_by_role("button", name=re.compile("^Use valley")).count():
        m = re.search(r"step (\d+)", progress_text(page))
        if m:
            seen.add(int(m.group(1)))
        time.sleep(0.2)
    assert len(seen) >= 2, f"the live curve did not grow while running: {seen}"
    valley = page.get_by_role("button", name=re.compile("^Use valley"))
    lr_text = re.search(r"([\d.]+e-\d+)", valley.inner_text()).group(1)
    valley.click()
    wait_for_app_idle(page)
    assert float(page.get_by_label("Learning rate").input_value()) == pytest.approx(float(lr_text),
                                                                                    rel=0.05)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("5 · Coach").wait_for(timeout=120_000)
    wait_for_app_idle(page)
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)   # the epoch table
    # The share link is an st.code block, drawn a moment after the rest of the run (its
    # highlighter loads lazily): wait for it rather than counting at once.
    page.get_by_text("explore?run=").first.wait_for(timeout=30_000)


def test_slider_during_training_keeps_it_going_and_cancel_stops_it(page, app_url):
    open_train(page, app_url, "?epochs=40")
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("elapsed").wait_for(timeout=90_000)
    before = percent(progress_text(page))
    slider = page.get_by_role("slider").first
    slider.focus()
    slider.press("ArrowRight")
    wait_for_app_idle(page)
    after, t0 = before, time.time()
    while after <= before and time.time() - t0 < 30:  # the page redraws every few seconds
        time.sleep(0.5)
        after = percent(progress_text(page))
    assert after > before, (before, after)
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_text("5 · Coach").wait_for(timeout=60_000)
    page.get_by_text("Cancelled.", exact=False).or_(
        page.get_by_text("No finished epoch yet")).first.wait_for(timeout=30_000)


def test_two_sessions_queue_then_both_run(browser, app_url):
    ctxs = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        pages = [c.new_page() for c in ctxs]
        for pg in pages:
            pg.set_default_timeout(60_000)
            open_train(pg, app_url, "?epochs=3")
        for pg in pages:
            pg.get_by_role("button", name="Train", exact=True).click()
        pages[1].get_by_text(re.compile(r"position \d+ in the queue")).wait_for(timeout=60_000)
        for pg in pages:
            pg.get_by_text("5 · Coach").wait_for(timeout=180_000)
    finally:
        for c in ctxs:
            c.close()


def test_precompute_greyed_with_augmentation_then_used_from_a_link(page, app_url):
    name = "Precompute body features (precompute=True)"
    settings = "?arch=efficientnet_lite0&pre=1&size=32&method=fit_one_cycle&epochs=1"
    open_train(page, app_url, settings + "&aug=1&pc=1")
    box = page.get_by_role("checkbox", name=name)
    assert box.is_disabled() and not box.is_checked()
    assert page.get_by_text("Precompute needs augmentation off").count() == 1
    open_train(page, app_url, settings + "&aug=0&pc=1")
    box = page.get_by_role("checkbox", name=name)
    assert box.is_enabled() and box.is_checked()
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("The head trained on precomputed body features").wait_for(timeout=120_000)


def test_refused_urls_are_listed_and_the_split_settings_survive_the_download(page, app_url):
    """After a URL download (here every address is refused before any connection), the page lists
    each address with its reason, and the validation share and seed come back as they were (they
    once came back at their minimum, 0.05 and 0, after the download's live panel)."""
    open_train(page, app_url)
    page.get_by_text("Image URLs per class").first.click()
    wait_for_app_idle(page)
    areas = page.get_by_label("URLs, one per line")
    for i, text in enumerate(["http://127.0.0.1/bear.jpg\nfile:///etc/passwd",
                              "http://10.0.0.1/<b>teddy</b>.png"]):
        areas.nth(i).fill(text)
        areas.nth(i).press("Control+Enter")      # commit this box's value (a rerun) ...
        page.wait_for_timeout(500)               # ... which may start a moment later
        wait_for_app_idle(page)
    report = page.get_by_text("Which 3 addresses failed, and why")
    # Refused addresses end the job within milliseconds, often during the very run that started
    # it; the page once missed that and stayed with a disabled button and no report.
    page.get_by_role("button", name="Download the images").click()
    report.wait_for(timeout=30_000)
    wait_for_app_idle(page)
    slider = page.locator("[data-testid=stSlider]").filter(has_text="Validation share")
    assert slider.locator("input").first.input_value() == "0.2", slider.inner_text()
    seed = page.locator("[data-testid=stNumberInput]").filter(has_text="Seed").locator("input")
    assert seed.input_value() == "42"
    assert page.locator("text=Traceback").count() == 0
