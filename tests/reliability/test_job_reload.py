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
from ui import state

OWNER = state.OWNER_COOKIE


def owner_cookie(context) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == OWNER), None)


STEPS_JS = """() => {
    let most = -1;      // during a rerun the old chart can still be there beside the new one
    for (const gd of document.querySelectorAll('.js-plotly-plot')) {
        const title = ((gd.layout && gd.layout.title && gd.layout.title.text) || '')
            .replace(/<[^>]*>/g, '');           // Streamlit wraps chart titles in <b>
        if (title.startsWith('Training loss per batch') && gd.data && gd.data[0])
            most = Math.max(most, (gd.data[0].x || []).length);
    }
    return most;
}"""


def steps(pg) -> int:
    """Training steps drawn in the live loss chart (-1 while it is not there): finer than the
    progress bar's whole percents, so a slow machine still shows progress."""
    try:
        return pg.evaluate(STEPS_JS)
    except PlaywrightError:     # the page is being replaced (a rerun or a reload)
        return -1


def wait_steps_above(pg, floor: int, seconds: float) -> int:
    """Poll until the chart shows more than `floor` steps; returns what it showed last."""
    seen, t0 = -1, time.monotonic()
    while time.monotonic() - t0 < seconds:
        seen = steps(pg)
        if seen > floor:
            return seen
        time.sleep(0.5)
    return seen


def epoch_shown(pg) -> int:
    """The epoch the progress bar names ("epoch 3 of 60"), or 0."""
    try:
        text = pg.locator('[data-testid="stProgress"]').first.inner_text(timeout=1_000)
    except PlaywrightError:
        return 0
    m = re.search(r"epoch (\d+) of", text)
    return int(m.group(1)) if m else 0


# The cookie: an AppTest of the shared prologue, then every page in Chromium ---------------------
def test_the_prologue_sends_a_strict_cookie_script_only_while_the_browser_lacks_it():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    token = at.session_state[state.SESSION_OWNER]
    bodies = [h.proto.body for h in at.get("html")]
    assert len(bodies) == 1 and bodies[0].count(token) == 1
    for part in (f"{OWNER}={token}", "path=/", "SameSite=Strict", "display: none"):
        assert part in bodies[0]
    # A forged cookie can never reach the script: only the generator's alphabet and length pass.
    assert state._well_formed(token)
    for bad in ("x'; alert(1); '", "<script>", "a" * 21, "a" * 23, None, 7):
        assert not state._well_formed(bad)


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
        assert state._well_formed(cookie["value"])
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
    page.goto(f"{base}/train?epochs=100")       # digits: about a second an epoch on 2 cores
    page.get_by_role("button", name="Train", exact=True).wait_for(timeout=120_000)
    wait_for_app_idle(page, 90_000)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("elapsed").wait_for(timeout=90_000)
    owner = owner_cookie(page.context)["value"]

    # A setting changes while the job runs (the validation share): the page reruns, the job goes on.
    before = wait_steps_above(page, 0, 60)
    slider = page.get_by_role("slider").first
    slider.focus()
    slider.press("ArrowRight")
    wait_for_app_idle(page)
    moved = wait_steps_above(page, before, 60)
    assert moved > before > 0, (before, moved)

    # A reload is a new session; the cookie names the same owner, so the page finds its job again:
    # the live chart comes back without pressing Train, no shorter than before, and still grows.
    page.reload()
    page.get_by_text("elapsed").wait_for(timeout=90_000)
    assert owner_cookie(page.context)["value"] == owner
    again = wait_steps_above(page, 0, 30)
    assert again >= moved, (moved, again)
    later = wait_steps_above(page, again, 60)
    assert later > again, (again, later)
    assert page.get_by_role("button", name="Train", exact=True).is_disabled()

    # Let one epoch finish (a second or so on a quiet machine), so the cancelled run is saved.
    t0 = time.monotonic()
    while epoch_shown(page) < 2 and time.monotonic() - t0 < 180:
        time.sleep(0.5)
    assert epoch_shown(page) >= 2, "no epoch finished in 3 minutes"

    # Cancel: the job stops and the page says so.
    t0 = time.monotonic()
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_text("5 · Coach").wait_for(timeout=60_000)
    page.get_by_text("Cancelled.", exact=False).first.wait_for(timeout=5_000)
    took = time.monotonic() - t0
    # Stopping takes at most one batch (tests/engine/test_jobs.py); the page then sees it at its
    # next redraw (every 2.5 s) and draws itself again.
    assert took < 30, f"Cancel took {took:.1f} s to show on the page"
    assert page.locator("text=Traceback").count() == 0

    # Exactly one run was saved, cancelled, by this browser's owner: the reload did not start a
    # second job or lose the first.
    infos = [json.loads(p.read_text()) for p in (data / "runs").glob("*/run.json")]
    assert [(i["status"], i["owner"]) for i in infos] == [("cancelled", owner)]
    assert 0 < infos[0]["epochs"] < 100
