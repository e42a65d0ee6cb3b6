"""Case 7 of issue 8 in a real browser: a training job goes on through a slider move and a reload,
the reloaded page finds the same job again (through the owner cookie every page sets), and Cancel
stops it. The unwatched-job timeout is tested in tests/engine/test_jobs.py.

Also here, because the reload depends on it: every page stores the session's owner token in a
SameSite=Strict cookie without drawing anything, and a reload reads it back.
"""
from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import Error as PlaywrightError
from streamlit.testing.v1 import AppTest

from tests.browser.conftest import ROOT, wait_for_app_idle
from ui import state as S

OWNER = "dllab_owner"


def owner_cookie(context) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == OWNER), None)


def progress_text(pg) -> str:
    """The progress bar's text, or "" (the bar can vanish between finding and reading it)."""
    try:
        return pg.locator('[data-testid="stProgress"]').first.inner_text(timeout=1_000)
    except PlaywrightError:
        return ""


def percent(text: str) -> int:
    m = re.search(r"(\d+)%", text)
    return int(m.group(1)) if m else -1


def wait_percent_above(pg, floor: int, seconds: float) -> int:
    """Poll the progress bar until it shows more than `floor` percent; returns what it showed."""
    seen, t0 = -1, time.monotonic()
    while time.monotonic() - t0 < seconds:
        seen = percent(progress_text(pg))
        if seen > floor:
            return seen
        time.sleep(0.5)
    return seen


# The cookie: an AppTest of the shared prologue, then every page in Chromium ---------------------
def test_the_prologue_sends_a_strict_cookie_script_only_while_the_browser_lacks_it():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    token = at.session_state[S.SESSION_OWNER]
    bodies = [h.proto.body for h in at.get("html")]
    assert len(bodies) == 1 and bodies[0].count(token) == 1
    for part in (f"{OWNER}={token}", "path=/", "SameSite=Strict", "display: none"):
        assert part in bodies[0]
    # A forged cookie can never reach the script: only the generator's alphabet and length pass.
    assert S._well_formed(token)
    for bad in ("x'; alert(1); '", "<script>", "a" * 21, "a" * 23, None, 7):
        assert not S._well_formed(bad)


@pytest.mark.browser
@pytest.mark.parametrize("path", ["/", "/kernels", "/explore"])
def test_every_page_keeps_the_owner_in_a_strict_cookie(server, browser, path):
    base, _, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(90_000)
    try:
        pg.goto(base + path)
        pg.locator("h1").first.wait_for()
        wait_for_app_idle(pg, 90_000)
        pg.wait_for_function(f"() => document.cookie.includes('{OWNER}=')", timeout=15_000)
        cookie = owner_cookie(context)
        assert S._well_formed(cookie["value"])
        assert (cookie["sameSite"], cookie["path"], cookie["httpOnly"]) == ("Strict", "/", False)
        assert cookie["expires"] > time.time() + 29 * 24 * 3600
        # The element that set it takes no room on the page.
        shown = pg.evaluate("""() => [...document.querySelectorAll('[data-testid=stHtml]')]
            .map(e => e.closest('[data-testid=stElementContainer]'))
            .filter(c => getComputedStyle(c).display !== 'none').length""")
        assert shown == 0
        # A reload is a new Streamlit session: it reads the token back (so it sends no new
        # script), and the cookie keeps its value.
        pg.reload()
        pg.locator("h1").first.wait_for()
        wait_for_app_idle(pg, 90_000)
        assert pg.locator("[data-testid=stHtml]").count() == 0
        assert owner_cookie(context)["value"] == cookie["value"]
    finally:
        context.close()


# Case 7 ------------------------------------------------------------------------------------------
@pytest.mark.browser
def test_training_survives_a_slider_and_a_reload_then_cancel_stops_it(server, page):
    base, _, data = server
    page.set_default_timeout(90_000)
    page.goto(f"{base}/train?epochs=60")        # digits: about a second an epoch on 2 cores
    page.get_by_role("button", name="Train", exact=True).wait_for(timeout=120_000)
    wait_for_app_idle(page, 90_000)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("elapsed").wait_for(timeout=90_000)
    owner = owner_cookie(page.context)["value"]

    # A setting changes while the job runs (the validation share): the page reruns, the job goes on.
    before = percent(progress_text(page))
    slider = page.get_by_role("slider").first
    slider.focus()
    slider.press("ArrowRight")
    wait_for_app_idle(page)
    moved = wait_percent_above(page, before, 30)
    assert moved > before, (before, moved)

    # A reload is a new session; the cookie names the same owner, so the page finds its job again:
    # the progress bar comes back without pressing Train, no lower than before, and still grows.
    page.reload()
    page.get_by_text("elapsed").wait_for(timeout=90_000)
    assert owner_cookie(page.context)["value"] == owner
    again = percent(progress_text(page))
    assert again >= moved, (moved, again)
    later = wait_percent_above(page, again, 30)
    assert later > again, (again, later)
    assert page.get_by_role("button", name="Train", exact=True).is_disabled()

    # Cancel: the job stops and the page says so.
    t0 = time.monotonic()
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_text("5 · Coach").wait_for(timeout=30_000)
    page.get_by_text("Cancelled.", exact=False).first.wait_for(timeout=5_000)
    took = time.monotonic() - t0
    assert took < 20, f"Cancel took {took:.1f} s to show on the page"
    assert page.locator("text=Traceback").count() == 0

    # Exactly one run was saved, cancelled, by this browser's owner: the reload did not start a
    # second job or lose the first.
    infos = [json.loads(p.read_text()) for p in (data / "runs").glob("*/run.json")]
    assert [(i["status"], i["owner"]) for i in infos] == [("cancelled", owner)]
    assert 0 < infos[0]["epochs"] < 60
