"""The SGD page in a real Chromium: the animation plays in the browser without asking the server for
anything, and a share link reproduces the run. Timeouts are generous: the machine may be slow."""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import wait_for_app_idle

pytestmark = pytest.mark.browser

LOAD_MS = 120_000


def _animation(page):
    """The animation chart: the Plotly chart that holds the training-loop panel."""
    chart = page.locator(".js-plotly-plot").filter(has_text="the training loop").first
    chart.wait_for(state="visible", timeout=LOAD_MS)
    return chart


def _open(page, url: str):
    page.goto(url, timeout=LOAD_MS)
    chart = _animation(page)
    wait_for_app_idle(page, LOAD_MS)
    return chart


def _step_label(chart) -> str:
    """The slider's current-value text ("step 12"): the first label in Plotly's slider group."""
    return chart.locator(".slider-container text.slider-label").first.text_content() or ""


def _share_link(page) -> str:
    code = page.locator("[data-testid='stCode']").filter(has_text="/sgd?").first
    code.wait_for(timeout=LOAD_MS)
    return re.sub(r"\s+", "", code.text_content() or "")


def test_play_advances_frames_in_the_browser_without_a_rerun(page, app_url):
    sent = []                      # messages the browser sends to the server (a rerun is one)

    def watch(ws):
        ws.on("framesent", lambda payload: sent.append(time.monotonic()))

    page.on("websocket", watch)
    chart = _open(page, f"{app_url}/sgd?lr=0.1&steps=60&ms=30&bs=10&seed=42")
    assert _step_label(chart).strip() == "steps done: 0"
    code_before = chart.locator("text", has_text="# step 1 of 60").count()
    assert code_before >= 1
    time.sleep(1.0)
    before = len(sent)
    assert before > 0, "the websocket watcher saw no message at all (the first run is requested)"

    chart.locator("g.updatemenu-button", has_text="Play").first.click()
    labels = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        labels.add(_step_label(chart).strip())
        if "steps done: 60" in labels:
            break
        time.sleep(0.05)
    assert "steps done: 60" in labels, f"the animation did not reach the last frame: saw {sorted(labels)}"
    assert len(labels) >= 5, f"frames did not advance one by one: saw {sorted(labels)}"
    # the code panel moved on with the frames
    assert chart.locator("text", has_text="# all 60 steps done").count() >= 1
    # nothing was sent to the server while it played: no rerun, and Streamlit never showed running
    assert len(sent) == before, f"{len(sent) - before} messages went to the server during playback"
    assert page.locator("[data-testid='stStatusWidget']").count() == 0


def test_pause_stops_and_slider_jumps_to_a_frame(page, app_url):
    chart = _open(page, f"{app_url}/sgd?lr=0.1&steps=200&ms=150")
    chart.locator("g.updatemenu-button", has_text="Play").first.click()
    page.wait_for_function(
        "el => !/done: 0$/.test(el.querySelector('.slider-container text.slider-label')"
        ".textContent.trim())",
        arg=chart.element_handle(), timeout=30_000)
    chart.locator("g.updatemenu-button", has_text="Pause").first.click()
    time.sleep(1.0)
    paused = _step_label(chart)
    time.sleep(1.5)
    assert _step_label(chart) == paused and paused.strip() != "steps done: 200"


def test_share_link_reproduces_the_run(page, app_url, browser):
    query = "lr=0.501&steps=40&bs=20&opt=momentum&noise=0.5&n=200&seed=3&a1=2&a2=-3"
    chart = _open(page, f"{app_url}/sgd?{query}")
    title = chart.locator(".gtitle").first.text_content()
    assert "lr 0.501 · momentum · batch 20 · 40 steps" in title
    link = _share_link(page)
    for pair in query.split("&"):
        assert pair in link, f"{pair} missing from the share link {link}"

    # change the run in the page, then open its share link in a fresh browser context
    page.get_by_role("button", name="too low").click()
    expect(_animation(page).locator(".gtitle").first).to_contain_text(
        "lr 0.001 · sgd · full batch · 100 steps", timeout=LOAD_MS)
    wait_for_app_idle(page, LOAD_MS)
    link = _share_link(page)
    assert "lr=0.001" in link and "seed=3" in link          # the preset kept the points
    title = _animation(page).locator(".gtitle").first.text_content()
    values = _animation(page).locator("text", has_text="# loss =").first.text_content()

    other = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    try:
        chart2 = _open(other, link)
        assert chart2.locator(".gtitle").first.text_content() == title
        assert chart2.locator("text", has_text="# loss =").first.text_content() == values
        assert _share_link(other) == link
    finally:
        other.context.close()


def test_line_by_line_shows_each_lines_value_as_it_runs(page, app_url):
    chart = _open(page, f"{app_url}/sgd?lines=1&ms=250")
    read = ("el => [el.querySelector('.slider-container text.slider-label').textContent.trim(), "
            "[...el.querySelectorAll('text')].map(t => t.textContent).filter(t => t.startsWith('#'))]")
    chart.locator("g.updatemenu-button", has_text="Play").first.click()
    seen = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(seen) < 8:
        label, comments = chart.evaluate(read)
        seen[label] = comments
        time.sleep(0.05)
    assert {"step 1 · predict", "step 1 · loss", "step 1 · backward", "step 1 · update"} <= set(seen)
    assert not any(c.startswith("# loss") for c in seen["step 1 · predict"])
    assert any(c.startswith("# loss = 8.23") for c in seen["step 1 · loss"])
    assert any(c.startswith("# a.grad = (-2.886") for c in seen["step 1 · backward"])
    assert any(c.startswith("# a becomes") for c in seen["step 1 · update"])
